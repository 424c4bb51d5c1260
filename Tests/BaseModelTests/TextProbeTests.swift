import BaseModel
import World
import XCTest

/// The text-only probe behind `evaluate-base`'s held-out context figure.
final class TextProbeTests: XCTestCase {
    func testTrainingWordingIsSeparableAndHeldOutSynonymsAreHarder() throws {
        let encoder = try XCTUnwrap(TrainerTests.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        let heldIn = (0..<100).map { BaseEvaluation.caption($0, seed: 9, wording: .train) }
        let heldOut = (0..<100).map { BaseEvaluation.caption($0, seed: 9, wording: .heldOutBoth) }
        let r = try TextProbe.run(encoder: encoder, heldIn: heldIn, heldOut: heldOut, seed: 9, captionsPerClass: 20)
        XCTAssertGreaterThanOrEqual(r.heldInAccuracy, 0.95, "MiniLM separates the classes under training wording")
        XCTAssertLessThan(r.heldOutAccuracy, r.heldInAccuracy)
        XCTAssertEqual(r.perClassHeldOut.count, Vocabulary.classCount)
        XCTAssertEqual(r.perClassHeldOut.reduce(0, +) / Double(Vocabulary.classCount), r.heldOutAccuracy, accuracy: 1e-9,
                       "balanced classes: the mean of the per-class figures is the overall one")
        // The same captions on both sides: the ratio is exactly 1, and the probe is deterministic.
        let same = try TextProbe.run(encoder: encoder, heldIn: heldIn, heldOut: heldIn, seed: 9, captionsPerClass: 20)
        XCTAssertEqual(same.heldOutToHeldInRatio, 1)
        XCTAssertEqual(same.heldInAccuracy, r.heldInAccuracy)
    }
}
