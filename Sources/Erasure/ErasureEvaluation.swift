import BaseModel
import BLAS
import Detector
import Flux
import Foundation
import World

/// How well a concept is gone and how intact the rest is, read by the concept detector on samples of the
/// original and the erased model from the same prompts and seeds.
public struct ErasureReport: Codable, Sendable {
    public struct PromptSet: Codable, Sendable {
        public let name: String
        public let prompts: Int
        public let before: Double        // detection rate of the concept (concept sets) or object accuracy (neutral)
        public let after: Double
    }
    public let protocolVersion: String
    public let concepts: [String]
    public let samplingSteps: Int
    public let guidance: Double
    public let seed: UInt64
    /// Concept detection rate (ACC) on the training concept prompts (their own seeds).
    public let training: PromptSet
    /// Concept ACC on fresh held-in prompts and on held-out synonyms and templates (new seeds).
    public let heldIn: PromptSet
    public let heldOut: PromptSet
    /// Object-class accuracy on neutral prompts (other classes).
    public let neutral: PromptSet
    /// Mean SSIM between original and erased samples of the neutral prompts (same seeds).
    public let neutralSSIM: Double
    /// Share of concept prompts (held-in set) whose background colour the detector reads as the prompt's, after erasure.
    public let conceptBackgroundKept: Double
    /// Share of neutral prompts whose object and background colours match the prompt, after erasure.
    public let neutralColorsKept: Double
    public let maskedUnits: Int
    public let totalUnits: Int
    public let maskedPerSite: [String: Int]

    public struct Targets: Codable, Sendable {
        public let conceptGone: Bool            // held-in concept ACC ≤ 5 %
        public let conceptWasThere: Bool        // before ≥ 85 %
        public let neutralKept: Bool            // neutral accuracy within 3 points
        public let ssim: Bool                   // ≥ 0.85
        public let background: Bool             // ≥ 90 % (deconcept target)
    }
    public var targets: Targets {
        Targets(conceptGone: heldIn.after <= 0.05, conceptWasThere: heldIn.before >= 0.85,
                neutralKept: neutral.after >= neutral.before - 0.03, ssim: neutralSSIM >= 0.85,
                background: conceptBackgroundKept >= 0.9)
    }
}

public enum ErasureEvaluation {
    public static let protocolVersion = "erase-eval-1"

    /// Evaluation prompts for world concepts: `count` held-in and held-out captions of the erased classes
    /// and `count` captions of other classes, colours and wording from `seed` (disjoint from training seeds).
    public static func prompts(concepts: [ConceptSpec], count: Int, seed: UInt64)
        -> (heldIn: [Caption], heldOut: [Caption], neutral: [Caption]) {
        let ids = concepts.compactMap(\.classID)
        func captions(_ classes: [Int], _ wording: CaptionWording, _ salt: UInt64) -> [Caption] {
            guard !classes.isEmpty else { return [] }
            return (0..<count).map { i in
                var rng = WorldRNG(seed: seed ^ salt, index: UInt64(i))
                let cls = classes[i % classes.count]
                let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
                let (ts, ss) = CaptionGrammar.choices(classID: cls, wording: wording)
                return Caption(classID: cls, objColor: pair.object, bgColor: pair.background, template: ts[rng.below(ts.count)],
                               synonym: ss[rng.below(ss.count)])
            }
        }
        let others = (0..<Vocabulary.classCount).filter { !ids.contains($0) }
        return (captions(ids, .train, 0xE1), captions(ids, .heldOutBoth, 0xE2), captions(others, .train, 0xE3))
    }

    public static func seeds(_ n: Int, seed: UInt64, salt: UInt64) -> [UInt64] {
        (0..<n).map { seed &+ 0xE7A1_0000 &+ salt &* 100_000 &+ UInt64($0) }
    }

    /// Samples `prompts` with and without masks (same seeds) and reads them with the detector.
    public static func run(
        model: FluxTransformer<Float>, masks: MaskSet<Float>, encoder: PromptEncoder, detector: SceneDetector,
        concepts: [ConceptSpec], trainingItems: [ErasureItem], count: Int, steps: Int, guidance: Double, seed: UInt64,
        maskedUnits: Int, totalUnits: Int, maskedPerSite: [String: Int], progress: ((String) -> Void)? = nil
    ) throws -> (report: ErasureReport, images: [String: (before: [RGBImage], after: [RGBImage], prompts: [String])]) {
        let ids = Set(concepts.compactMap(\.classID))
        guard !ids.isEmpty else {
            throw ErasureError.badInput("the detector measures the world's classes only; \(concepts.map(\.name)) is not one of them")
        }
        let gen = Generator(model: model, encoder: encoder, steps: steps, guidanceScale: guidance)
        let p = prompts(concepts: concepts, count: count, seed: seed)
        var images: [String: (before: [RGBImage], after: [RGBImage], prompts: [String])] = [:]
        func both(_ name: String, _ texts: [String], _ seeds: [UInt64]) throws -> ([RGBImage], [RGBImage]) {
            progress?("\(name): original model")
            let before = try gen.images(prompts: texts, seeds: seeds)
            progress?("\(name): erased model")
            let after = try gen.images(prompts: texts, seeds: seeds, masks: masks)
            images[name] = (before, after, texts)
            return (before, after)
        }
        func rate(_ imgs: [RGBImage]) -> Double {
            let preds = detector.predict(imgs)
            return Double(preds.filter { ids.contains($0.classID) }.count) / Double(max(1, preds.count))
        }
        let trainConcept = trainingItems.filter(\.isConcept)
        let (tb, ta) = try both("training", trainConcept.map(\.prompt), trainConcept.map(\.seed))
        let (hib, hia) = try both("held-in", p.heldIn.map(\.text), seeds(count, seed: seed, salt: 1))
        let (hob, hoa) = try both("held-out", p.heldOut.map(\.text), seeds(count, seed: seed, salt: 2))
        let (nb, na) = try both("neutral", p.neutral.map(\.text), seeds(count, seed: seed, salt: 3))
        let predNB = detector.predict(nb), predNA = detector.predict(na), predHIA = detector.predict(hia)
        func acc(_ preds: [DetectorPrediction], _ caps: [Caption]) -> Double {
            Double(zip(preds, caps).filter { $0.classID == $1.classID }.count) / Double(max(1, caps.count))
        }
        let ssim = zip(nb, na).map { SSIM.mean($0, $1) }.reduce(0, +) / Double(max(1, nb.count))
        let bgKept = Double(zip(predHIA, p.heldIn).filter { $0.bgColor == $1.bgColor }.count) / Double(max(1, p.heldIn.count))
        let colours = Double(zip(predNA, p.neutral).filter { $0.bgColor == $1.bgColor && $0.objColor == $1.objColor }.count)
            / Double(max(1, p.neutral.count))
        let report = ErasureReport(
            protocolVersion: protocolVersion, concepts: concepts.map(\.name), samplingSteps: steps, guidance: guidance, seed: seed,
            training: .init(name: "training", prompts: trainConcept.count, before: rate(tb), after: rate(ta)),
            heldIn: .init(name: "held-in", prompts: count, before: rate(hib), after: rate(hia)),
            heldOut: .init(name: "held-out", prompts: count, before: rate(hob), after: rate(hoa)),
            neutral: .init(name: "neutral", prompts: count, before: acc(predNB, p.neutral), after: acc(predNA, p.neutral)),
            neutralSSIM: ssim, conceptBackgroundKept: bgKept, neutralColorsKept: colours,
            maskedUnits: maskedUnits, totalUnits: totalUnits, maskedPerSite: maskedPerSite)
        return (report, images)
    }
}
