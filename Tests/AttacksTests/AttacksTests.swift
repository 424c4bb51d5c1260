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
}
