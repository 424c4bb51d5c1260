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

    /// Mean ablation: a unit at multiplier m emits m·g + (1 − m)·f. Its fill is the token-weighted mean of the
    /// unit's output; with every multiplier at 1 the fill changes nothing; the gradient w.r.t. the multipliers
    /// is (g − f)·dL/d(output), checked against finite differences of a linear read-out of the encodings.
    func testFillIsTheMeanAndItsGradientMatchesFiniteDifferences() throws {
        guard let model = SharedModel.get() else { return }
        let (f, prompts, masks) = try fixture()
        let ids = try prompts.indices.map { try f.int64s("\($0).token_ids").map { Int($0) } }
        let F = model.intermediateSize
        let fill = try model.meanFeedForwardActivations(batch: ids)
        let parts = try ids.map { try model.meanFeedForwardActivations(batch: [$0]) }
        let tokens = Double(ids.map(\.count).reduce(0, +))
        for l in [0, 3, 5] {
            for j in stride(from: 0, to: F, by: 97) {
                let expected = zip(ids, parts).map { Double($0.count) * Double($1[l]![j]) }.reduce(0, +) / tokens
                XCTAssertEqual(Double(fill[l]![j]), expected, accuracy: 1e-5 * max(1, abs(expected)), "layer \(l) unit \(j)")
            }
        }
        XCTAssertGreaterThan(fill[2]!.map(abs).max()!, 0.05, "GELU outputs average to something non-zero")
        let ones = Dictionary(uniqueKeysWithValues: (0..<6).map { ($0, [Float](repeating: 1, count: F)) })
        XCTAssertEqual(try model.encode(batch: ids, feedForwardMasks: ones, fill: fill).encodings.map(\.hiddenStates),
                       try model.encode(batch: ids).map(\.hiddenStates))

        let dHidden = try prompts.indices.map { try f.floats("\($0).dhidden") }
        let dPooled = try prompts.indices.map { try f.floats("\($0).dpooled") }
        func readOut(_ m: [Int: [Float]]) throws -> Double {
            let encs = try model.encode(batch: ids, feedForwardMasks: m, fill: fill).encodings
            var s = 0.0
            for (k, e) in encs.enumerated() {
                for (a, b) in zip(e.hiddenStates, dHidden[k]) { s += Double(a) * Double(b) }
                for (a, b) in zip(e.pooled, dPooled[k]) { s += Double(a) * Double(b) }
            }
            return s
        }
        let (filled, tape) = try model.encode(batch: ids, feedForwardMasks: masks, fill: fill, keepTape: true)
        XCTAssertGreaterThan(maxAbsDiff(filled[0].hiddenStates, try model.encode(batch: ids, feedForwardMasks: masks).encodings[0].hiddenStates), 1e-3,
                             "the fill changes the masked encoding")
        let g = try model.feedForwardMaskGradients(tape: tape!, dHidden: dHidden, dPooled: dPooled)
        let (_, zeroTape) = try model.encode(batch: ids, feedForwardMasks: masks, keepTape: true)
        let g0 = try model.feedForwardMaskGradients(tape: zeroTape!, dHidden: dHidden, dPooled: dPooled)
        var differs = 0
        for l in [1, 4] {
            for j in g[l]!.indices.sorted(by: { abs(g[l]![$0]) > abs(g[l]![$1]) }).prefix(2) {
                let h: Float = 1e-2
                var up = masks, down = masks
                up[l]![j] += h; down[l]![j] -= h
                let fd = (try readOut(up) - readOut(down)) / Double(2 * h)
                XCTAssertEqual(Double(g[l]![j]), fd, accuracy: 2e-2 * abs(fd), "layer \(l) unit \(j)")
                if abs(g[l]![j] - g0[l]![j]) > 0.1 * abs(g[l]![j]) { differs += 1 }
            }
        }
        XCTAssertGreaterThan(differs, 0, "the fill changes the gradient of the units checked")
        XCTAssertThrowsError(try model.encode(batch: ids, feedForwardMasks: masks, fill: [0: [1, 2]])) {
            XCTAssertTrue("\($0)".contains("fill for layer 0 has 2 values"), "\($0)")
        }
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
