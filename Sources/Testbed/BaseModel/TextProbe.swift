import Foundation
import World

/// How well the text encoder alone tells the classes apart under held-out wording: each class's centroid is
/// the mean MiniLM sentence embedding of captions in the *training* wording, and a prompt is assigned to the
/// nearest centroid (cosine). An image model learns classes only from training wording too, so this
/// nearest-centroid accuracy on held-out wording indicates how much of the held-out bar the text
/// conditioning can carry at all; it involves no image model.
public struct TextProbeReport: Codable, Sendable, Equatable {
    public let centroidCaptionsPerClass: Int
    public let heldInAccuracy: Double
    public let heldOutAccuracy: Double
    public let heldOutToHeldInRatio: Double
    public let perClassHeldOut: [Double]
}

public enum TextProbe {
    /// Centroid captions are drawn with their own seed stream, disjoint from the prompts probed.
    public static func run(
        encoder: PromptEncoder, heldIn: [Caption], heldOut: [Caption], seed: UInt64, captionsPerClass: Int = 60
    ) throws -> TextProbeReport {
        precondition(captionsPerClass > 0)
        let classes = Vocabulary.classCount
        let references = (0..<(classes * captionsPerClass)).map {
            BaseEvaluation.caption($0, seed: seed ^ 0x5052_4F42, wording: .train)
        }
        let refEnc = try encoder.encode(references.map(\.text), allowUnknown: true)
        let dim = refEnc[0].pooled.count
        var centroids = [[Double]](repeating: [Double](repeating: 0, count: dim), count: classes)
        for (c, e) in zip(references, refEnc) {
            for j in 0..<dim { centroids[c.classID][j] += Double(e.pooled[j]) }
        }
        for k in 0..<classes {
            let norm = centroids[k].reduce(0) { $0 + $1 * $1 }.squareRoot()
            centroids[k] = centroids[k].map { $0 / max(norm, 1e-12) }
        }
        func predictions(_ captions: [Caption]) throws -> [Int] {
            try encoder.encode(captions.map(\.text), allowUnknown: true).map { e in
                let scores = centroids.map { c in zip(c, e.pooled).reduce(0) { $0 + $1.0 * Double($1.1) } }
                return scores.indices.max { scores[$0] < scores[$1] }!
            }
        }
        func accuracy(_ p: [Int], _ c: [Caption]) -> Double { BaseEvaluation.accuracy(zip(p, c).map { $0 == $1.classID }) }
        let pIn = try predictions(heldIn), pOut = try predictions(heldOut)
        let accIn = accuracy(pIn, heldIn), accOut = accuracy(pOut, heldOut)
        let perClass = BaseEvaluation.perClassAccuracy(predicted: pOut, truth: heldOut.map(\.classID))
        return TextProbeReport(centroidCaptionsPerClass: captionsPerClass, heldInAccuracy: accIn, heldOutAccuracy: accOut,
                               heldOutToHeldInRatio: accIn > 0 ? accOut / accIn : 0, perClassHeldOut: perClass)
    }
}
