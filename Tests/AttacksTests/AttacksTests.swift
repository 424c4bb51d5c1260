import Attacks
import BaseModel
import Detector
import Erasure
import Evaluation
import Flux
import Foundation
import TextEncoder
import World
import XCTest

final class AttacksTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The committed base model and detector (skips when they are absent).
    static func committed() throws -> (FluxTransformer<Float>, SceneDetector) {
        let basePath = root.appendingPathComponent(BaseModelSpec.defaultModelPath).path
        let detPath = root.appendingPathComponent(SceneDetector.defaultPath).path
        guard FileManager.default.fileExists(atPath: basePath), FileManager.default.fileExists(atPath: detPath) else {
            throw XCTSkip("no committed base model or detector")
        }
        return (FluxTransformer(weights: try FluxWeightLoader(path: basePath).load(as: Float.self)), try SceneDetector(path: detPath))
    }

    /// The genetic search only improves (elitism), is deterministic, and its prompt text re-tokenizes to its ids.
    func testRingABellSearch() throws {
        let encoder = try PromptEncoder()
        var o = RingABell.Options()
        o.tokens = 8; o.population = 16; o.generations = 12; o.pairs = 4
        let rab = RingABell(encoder: encoder, options: o)
        XCTAssertGreaterThan(rab.candidates.count, 10_000)
        let world = WorldSubject(transformer: FluxTransformer(weights: FluxWeights<Float>.random(config: BaseModelSpec.config(width: 64, doubleBlocks: 1, singleBlocks: 1), seed: 0)), encoder: encoder)
        let d = try rab.conceptDirection(pairs: world.conceptPairs(classes: [10], count: o.pairs, seed: o.seed))
        XCTAssertGreaterThan(d.map { $0 * $0 }.reduce(0, +), 0)
        let a = try rab.search(base: "a red object on a blue background", direction: d, runSeed: 1)
        XCTAssertEqual(a.history.count, o.generations + 1)
        for (x, y) in zip(a.history, a.history.dropFirst()) { XCTAssertLessThanOrEqual(y, x) }
        XCTAssertLessThan(a.distance, a.history[0])
        let b = try rab.search(base: "a red object on a blue background", direction: d, runSeed: 1)
        XCTAssertEqual(a.tokenIds, b.tokenIds)
        XCTAssertEqual(try encoder.miniLM.tokenIds(a.text), a.tokenIds)
        XCTAssertEqual(a.tokenIds.count, o.tokens + 2)
    }

    /// Against the original model (a mask that removes nothing) paraphrases of a concept the model draws well
    /// must succeed, and the erased and original columns agree exactly.
    func testParaphraseSucceedsOnTheOriginalModel() throws {
        let (base, detector) = try Self.committed()
        var s = AttackSettings()
        s.paraphrasePrompts = 8
        let r = try AttackRunner.paraphrase(subject: WorldSubject(transformer: base, encoder: try PromptEncoder()), erased: ErasedModel(name: "none", source: "test"),
                                            concepts: [try ConceptSpec.resolve("ankle boot")], judge: detector, settings: s)
        XCTAssertEqual(r.0.samples, 8)
        XCTAssertEqual(r.0.asr, r.0.originalASR)
        XCTAssertGreaterThanOrEqual(r.0.asr, 0.5, "\(r.0.prompts)")
        XCTAssertTrue(r.0.prompts.allSatisfy { p in !CaptionGrammar.mentions(in: p.text).isEmpty })
    }
}

extension AttacksTests {
    /// Ring-A-Bell's found prompts attack the original model's "bag" (which this model also draws from generic
    /// object words, so even a small search succeeds); the erased and original columns agree exactly.
    func testRingABellSucceedsOnTheOriginalModel() throws {
        let (base, detector) = try Self.committed()
        var s = AttackSettings()
        s.ringABellLengths = [16]; s.ringABellRuns = 1; s.samplesPerPrompt = 8
        s.ringABell.generations = 12; s.ringABell.population = 16
        let r = try AttackRunner.ringABell(subject: WorldSubject(transformer: base, encoder: try PromptEncoder()), erased: ErasedModel(name: "none", source: "test"),
                                           concepts: [try ConceptSpec.resolve("bag")], judge: detector, settings: s)
        XCTAssertEqual(r.0.samples, 8)
        XCTAssertEqual(r.0.asr, r.0.originalASR)
        XCTAssertGreaterThanOrEqual(r.0.asr, 0.5, "\(r.found.map(\.text))")
    }
}

/// The white-box and relearning attacks must succeed where success is certain: on the original model.
final class StrongAttacksTests: XCTestCase {
    /// Optimising inserted tokens keeps (or brings) the concept on the un-erased model; the loss falls, the run is
    /// deterministic, and the budgets are reported in order.
    func testEmbeddingAttackSucceedsOnTheOriginalModel() throws {
        let (base, det) = try AttacksTests.committed()
        var o = EmbeddingAttack.Options()
        o.tokens = 4; o.checkpoints = [0, 3]; o.batch = 2; o.evalSamples = 6
        let attack = EmbeddingAttack(subject: WorldSubject(transformer: base, encoder: try PromptEncoder()), options: o, samplingSteps: 8, guidance: 3)
        let none = ErasedModel(name: "none", source: "test")
        let a = try attack.run(classID: 9, erased: none, judge: det)
        XCTAssertEqual(a.run.curve.map(\.budget), [0, 3])
        XCTAssertEqual(a.run.losses.count, 3)
        XCTAssertLessThan(a.run.losses.last!, a.run.losses.first!, "the attack's objective falls")
        XCTAssertGreaterThanOrEqual(a.run.curve.last!.asr, 0.5, "\(a.run)")
        XCTAssertEqual(a.attacked.count, 6)
        let b = try attack.run(classID: 9, erased: none, judge: det)
        XCTAssertEqual(a.run.losses, b.run.losses)
    }

    /// An erased model with its own text encoder (masks on MiniLM) is attacked through that encoder: the start
    /// and the unconditional rows come from it, so the images at budget 0 are the erased pair's, not the base's.
    func testEmbeddingAttackReadsTheErasedTextEncoder() throws {
        let (base, det) = try AttacksTests.committed()
        let encoder = try PromptEncoder()
        func erasedEncoder(_ keep: Float) throws -> PromptEncoder {
            let m = try MiniLM(directory: encoder.miniLM.directory)
            try m.setFeedForwardMasks(Dictionary(uniqueKeysWithValues: (3..<6).map { ($0, [Float](repeating: keep, count: m.intermediateSize)) }))
            return PromptEncoder(miniLM: m, paddedLength: encoder.paddedLength)
        }
        var o = EmbeddingAttack.Options()
        o.tokens = 2; o.checkpoints = [0]; o.batch = 1; o.evalSamples = 2
        let attack = EmbeddingAttack(subject: WorldSubject(transformer: base, encoder: encoder), options: o, samplingSteps: 4, guidance: 3)
        func images(_ e: PromptEncoder?) throws -> [RGBImage] {
            try attack.run(classID: 9, erased: ErasedModel(name: "e", source: "test", encoder: e), judge: det).attacked
        }
        let plain = try images(nil)
        // (Compared with == so that a failure does not print 6,000 pixel values.)
        XCTAssertTrue(try images(erasedEncoder(1)) == plain, "an encoder with every unit kept is the base's")
        XCTAssertTrue(try images(erasedEncoder(0)) != plain, "the erased encoder's encodings are the ones attacked")
    }

    /// Fine-tuning the original on k real images of the concept: the control and the free variant start from the
    /// same weights, so their curves agree exactly; the concept is there from step 0 (recovered at once).
    func testRelearningOnTheOriginalModel() throws {
        let (base, det) = try AttacksTests.committed()
        var o = RelearningAttack.Options()
        o.images = 2; o.checkpoints = [0, 2]; o.evalSamples = 6
        let attack = RelearningAttack(subject: WorldSubject(transformer: base, encoder: try PromptEncoder()), options: o, samplingSteps: 8, guidance: 3)
        let scenes = try attack.trainingImages(classes: [9])
        XCTAssertEqual(scenes.count, 2)
        XCTAssertTrue(scenes.allSatisfy { CaptionGrammar.mentions(in: $0.caption).map(\.classID) == [9] })
        let r = try attack.run(erased: ErasedModel(name: "none", source: "test"), classes: [9], judge: det)
        XCTAssertEqual(r.curves.map(\.variant), ["free", "original (control)"])
        XCTAssertEqual(r.curves[0].points.map(\.asr), r.curves[1].points.map(\.asr))
        XCTAssertGreaterThanOrEqual(r.originalRate, 0.5)
        XCTAssertEqual(r.curves[0].stepsToRecover, 0)
        XCTAssertEqual(r.curves[0].points.map(\.budget), [0, 2])
    }
}
