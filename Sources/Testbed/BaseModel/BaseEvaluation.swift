import Detector
import Flux
import Evaluation
import Foundation
import World

/// The quality bar of the base model (`mce evaluate-base`): the detector reads generated scenes as it reads
/// real ones. Held-in prompts use training templates and synonyms; held-out prompts use only wording training
/// never saw. All prompts, colours and seeds are a pure function of `seed`.
public struct BaseEvaluationReport: Codable, Sendable {
    public struct ClassRow: Codable, Sendable {
        public let id: Int
        public let name: String
        public let generated: Double      // object-class accuracy on generated scenes (held-in prompts)
        public let real: Double           // the detector's accuracy on real test scenes
        public let heldOut: Double        // on generated scenes from held-out wording
    }
    public let protocolVersion: String
    public let samples: Int
    public let steps: Int
    public let guidance: Double
    public let seed: UInt64
    public let realObjectAccuracy: Double
    public let generatedObjectAccuracy: Double
    public let generatedToRealRatio: Double           // bar: ≥ 0.9 goal, ≥ 0.8 floor
    public let objectColorAccuracy: Double            // bar: ≥ 0.9
    public let backgroundColorAccuracy: Double        // bar: ≥ 0.9
    public let heldOutObjectAccuracy: Double
    public let heldOutToHeldInRatio: Double           // bar: ≥ 0.7
    public let inDomainFID: Double                    // generated (held-in) vs real test scenes, detector features
    public let inDomainFIDRealTrainVsTest: Double     // the same statistic between two real sets, for scale
    public let perClass: [ClassRow]
    /// The text encoder alone on the same prompts (see `TextProbe`): context for the held-out bar.
    public let textProbe: TextProbeReport?
    public var meetsFloor: Bool {
        generatedToRealRatio >= 0.8 && objectColorAccuracy >= 0.9 && backgroundColorAccuracy >= 0.9 && heldOutToHeldInRatio >= 0.7
    }
}

public enum BaseEvaluation {
    public static let protocolVersion = "base-eval-1"

    /// Prompt i: class i mod 20 (balanced), colours and wording drawn from `WorldRNG(seed, index: i)`.
    public static func caption(_ i: Int, seed: UInt64, wording: CaptionWording) -> Caption {
        var rng = WorldRNG(seed: seed, index: UInt64(i))
        let cls = i % Vocabulary.classCount
        let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
        let (templates, synonyms) = CaptionGrammar.choices(classID: cls, wording: wording)
        let t = templates[rng.below(templates.count)]
        let s = synonyms[rng.below(synonyms.count)]
        return Caption(classID: cls, objColor: pair.object, bgColor: pair.background, template: t, synonym: s)
    }

    /// The fraction of true entries (0 for none).
    static func accuracy(_ ok: [Bool]) -> Double { ok.isEmpty ? 0 : Double(ok.filter { $0 }.count) / Double(ok.count) }

    /// Class-by-class accuracy of predicted class ids, one entry per world class (0 for a class with no items).
    static func perClassAccuracy(predicted: [Int], truth: [Int]) -> [Double] {
        (0..<Vocabulary.classCount).map { c in accuracy(zip(predicted, truth).filter { $0.1 == c }.map { $0.0 == c }) }
    }

    public static func run(
        generator: Generator, detector: SceneDetector, samples: Int, seed: UInt64,
        progress: ((String, Int, Int) -> Void)? = nil
    ) throws -> BaseEvaluationReport {
        let n = samples
        let classes = Vocabulary.classCount
        let accuracy = Self.accuracy
        func perClass(_ preds: [DetectorPrediction], _ truth: [Int]) -> [Double] {
            Self.perClassAccuracy(predicted: preds.map(\.classID), truth: truth)
        }
        // Generated, held-in and held-out wording.
        let heldIn = (0..<n).map { caption($0, seed: seed, wording: .train) }
        let heldOut = (0..<n).map { caption($0, seed: seed ^ 0x484F, wording: .heldOutBoth) }
        let seeds = (0..<n).map { seed &+ UInt64($0) }
        let imgIn = try generator.images(prompts: heldIn.map(\.text), seeds: seeds) { d, t in progress?("held-in", d, t) }
        let imgOut = try generator.images(prompts: heldOut.map(\.text), seeds: seeds) { d, t in progress?("held-out", d, t) }
        let pIn = detector.predict(imgIn), pOut = detector.predict(imgOut)
        // Real test scenes (and real training scenes, for the FID scale).
        let test = try SceneSampler.load(split: .test, seed: seed)
        let train = try SceneSampler.load(split: .train, seed: seed)
        let realTest = test.scenes(0..<n), realTrain = train.scenes(0..<n)
        let pReal = detector.predict(realTest.map(\.image))
        let fid = Frechet.distance(detector.features(imgIn), detector.features(realTest.map(\.image)))
        let fidReal = Frechet.distance(detector.features(realTrain.map(\.image)), detector.features(realTest.map(\.image)))

        let genAcc = accuracy(zip(pIn, heldIn).map { $0.classID == $1.classID })
        let realAcc = accuracy(zip(pReal, realTest).map { $0.classID == $1.classID })
        let outAcc = accuracy(zip(pOut, heldOut).map { $0.classID == $1.classID })
        let gIn = perClass(pIn, heldIn.map(\.classID)), gReal = perClass(pReal, realTest.map(\.classID))
        let gOut = perClass(pOut, heldOut.map(\.classID))
        let probe = try TextProbe.run(encoder: generator.encoder, heldIn: heldIn, heldOut: heldOut, seed: seed)
        return BaseEvaluationReport(
            protocolVersion: protocolVersion, samples: n, steps: generator.steps, guidance: generator.guidanceScale, seed: seed,
            realObjectAccuracy: realAcc, generatedObjectAccuracy: genAcc,
            generatedToRealRatio: realAcc > 0 ? genAcc / realAcc : 0,
            objectColorAccuracy: accuracy(zip(pIn, heldIn).map { $0.objColor == $1.objColor }),
            backgroundColorAccuracy: accuracy(zip(pIn, heldIn).map { $0.bgColor == $1.bgColor }),
            heldOutObjectAccuracy: outAcc, heldOutToHeldInRatio: genAcc > 0 ? outAcc / genAcc : 0,
            inDomainFID: fid, inDomainFIDRealTrainVsTest: fidReal,
            perClass: (0..<classes).map {
                .init(id: $0, name: Vocabulary.classes[$0].name, generated: gIn[$0], real: gReal[$0], heldOut: gOut[$0])
            },
            textProbe: probe)
    }
}
