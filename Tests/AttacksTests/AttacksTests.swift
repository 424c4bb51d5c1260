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

    /// The genetic search only improves (elitism), is deterministic, and its prompt text re-tokenizes to its ids.
    func testRingABellSearch() throws {
        let encoder = try PromptEncoder()
        var o = RingABell.Options()
        o.tokens = 8; o.population = 16; o.generations = 12; o.pairs = 4
        let rab = RingABell(encoder: encoder, options: o)
        XCTAssertGreaterThan(rab.candidates.count, 10_000)
        let d = try rab.conceptDirection(classes: [10])
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
        let basePath = Self.root.appendingPathComponent(BaseModelSpec.defaultModelPath).path
        let detPath = Self.root.appendingPathComponent(SceneDetector.defaultPath).path
        guard FileManager.default.fileExists(atPath: basePath), FileManager.default.fileExists(atPath: detPath) else {
            throw XCTSkip("no committed base model or detector")
        }
        let base = FluxTransformer(weights: try FluxWeightLoader(path: basePath).load(as: Float.self))
        var s = AttackSettings()
        s.paraphrasePrompts = 8
        let r = try AttackRunner.paraphrase(base: base, erased: ErasedModel(name: "none", source: "test"), concepts: [try ConceptSpec.resolve("ankle boot")],
                                            encoder: try PromptEncoder(), detector: try SceneDetector(path: detPath), settings: s)
        XCTAssertEqual(r.0.samples, 8)
        XCTAssertEqual(r.0.asr, r.0.originalASR)
        XCTAssertGreaterThanOrEqual(r.0.asr, 0.5, "\(r.0.prompts)")
        XCTAssertTrue(r.0.prompts.allSatisfy { p in !CaptionGrammar.mentions(in: p.text).isEmpty })
    }
}
