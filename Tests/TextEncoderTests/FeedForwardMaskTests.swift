import Foundation
import SafeTensors
import TextEncoder
import XCTest

/// Multipliers on MiniLM's feed-forward units and their gradient, against float64 autograd in transformers
/// (fixture from scripts/minilm/generate_mask_gradient_fixture.py).
final class FeedForwardMaskTests: XCTestCase {
    func fixture() throws -> (SafeTensorsFile, [String], [Int: [Float]]) {
        let f = try SafeTensorsFile(path: MiniLMFixtures.path("mask_gradient_cases.safetensors"))
        let prompts = try JSONDecoder().decode([String].self, from: Data(f.metadata["prompts"]!.utf8))
        let all = try f.floats("masks"), width = all.count / 6
        var masks: [Int: [Float]] = [:]
        for l in 0..<6 { masks[l] = Array(all[l * width..<(l + 1) * width]) }
        return (f, prompts, masks)
    }

    func testMaskedForwardAndMaskGradientMatchAutograd() throws {
        guard let model = SharedModel.get() else { return }
        let (f, prompts, masks) = try fixture()
        let ids = try prompts.indices.map { try f.int64s("\($0).token_ids").map { Int($0) } }
        let (encs, tape) = try model.encode(batch: ids, feedForwardMasks: masks, keepTape: true)
        for k in prompts.indices {
            XCTAssertLessThanOrEqual(maxAbsDiff(encs[k].hiddenStates, try f.floats("\(k).last_hidden_state")), 1e-4, prompts[k])
            XCTAssertLessThanOrEqual(maxAbsDiff(encs[k].pooled, try f.floats("\(k).pooled")), 1e-5, prompts[k])
        }
        // The masks change the output: the unmasked encoding is far from the masked reference.
        XCTAssertGreaterThan(maxAbsDiff(try model.encode(tokenIds: ids[0]).hiddenStates, try f.floats("0.last_hidden_state")), 0.1)

        let grads = try model.feedForwardMaskGradients(
            tape: tape!, dHidden: try prompts.indices.map { try f.floats("\($0).dhidden") },
            dPooled: try prompts.indices.map { try f.floats("\($0).dpooled") })
        let expected = try f.floats("grad"), width = model.intermediateSize
        XCTAssertEqual(Set(grads.keys), Set(0..<6))
        for l in 0..<6 {
            let want = Array(expected[l * width..<(l + 1) * width])
            let scale = want.map(abs).max()!
            let diff = maxAbsDiff(grads[l]!, want)
            XCTAssertLessThanOrEqual(diff, 2e-3 * scale, "layer \(l): max |Δ| \(diff), max |grad| \(scale)")
        }
    }

    func testOnlyTheMaskedLayersGetGradients() throws {
        guard let model = SharedModel.get() else { return }
        let (f, _, masks) = try fixture()
        let ids = try [f.int64s("0.token_ids").map { Int($0) }]
        let upper = [3: masks[3]!, 5: masks[5]!]
        let (_, tape) = try model.encode(batch: ids, feedForwardMasks: upper, keepTape: true)
        let g = try model.feedForwardMaskGradients(tape: tape!, dHidden: [try f.floats("0.dhidden")], dPooled: [[]])
        XCTAssertEqual(Set(g.keys), [3, 5])
        XCTAssertGreaterThan(g[3]!.map(abs).max()!, 0)
    }

    func testBadMasksAndGradientsAreRefused() throws {
        guard let model = SharedModel.get() else { return }
        let ids = [[model.tokenizer.clsId, model.tokenizer.sepId]]
        XCTAssertThrowsError(try model.encode(batch: ids, feedForwardMasks: [6: [Float](repeating: 1, count: 1536)])) {
            XCTAssertTrue("\($0)".contains("layer 6"), "\($0)")
        }
        XCTAssertThrowsError(try model.encode(batch: ids, feedForwardMasks: [0: [1, 1]])) {
            XCTAssertTrue("\($0)".contains("expected 1536"), "\($0)")
        }
        let (_, tape) = try model.encode(batch: ids, feedForwardMasks: [0: [Float](repeating: 1, count: 1536)], keepTape: true)
        XCTAssertThrowsError(try model.feedForwardMaskGradients(tape: tape!, dHidden: [[1, 2]], dPooled: [[]])) {
            XCTAssertTrue("\($0)".contains("expected 768"), "\($0)")
        }
    }
}
