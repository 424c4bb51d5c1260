import BaseModel
import BLAS
import Flux
import Foundation
import World
import XCTest

/// A prompt's sample is a function of the prompt and the seed only — not of the other prompts in its batch
/// (text is padded to the longest caption the grammar makes, so batch composition cannot change what the model
/// attends to; only prompts longer than every caption pad their companions further).
final class GeneratorTests: XCTestCase {
    func testSampleDoesNotDependOnBatchCompanions() throws {
        let encoder = try XCTUnwrap(TrainerTests.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        let cfg = BaseModelSpec.config(width: 64, doubleBlocks: 1, singleBlocks: 1)
        let model = FluxTransformer(weights: FluxWeights<Float>.random(config: cfg, seed: 2))
        for guidance in [1.0, 3.0] {
            let gen = Generator(model: model, encoder: encoder, steps: 3, guidanceScale: guidance)
            let alone = try gen.latents(prompts: ["a red cat"], seeds: [7])[0]
            let long = BaseEvaluation.caption(5, seed: 0, wording: .heldOutBoth).text   // any caption of the grammar
            let batched = try gen.latents(prompts: [long, "a red cat"], seeds: [1, 7])[1]
            // Equal up to GEMM rounding (BLAS blocks differently for other batch sizes); without the fixed
            // padding the difference is of the order of the values themselves.
            let scale = alone.map(abs).max()!, diff = zip(alone, batched).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "guidance \(guidance)")
        }
        // The check can fail: padding only to the batch's longest prompt makes the sample depend on its companions.
        let saved = encoder.paddedLength
        encoder.paddedLength = 0
        defer { encoder.paddedLength = saved }
        let gen = Generator(model: model, encoder: encoder, steps: 3, guidanceScale: 1)
        let alone = try gen.latents(prompts: ["a red cat"], seeds: [7])[0]
        let batched = try gen.latents(prompts: [BaseEvaluation.caption(5, seed: 0, wording: .heldOutBoth).text, "a red cat"], seeds: [1, 7])[1]
        XCTAssertGreaterThan(zip(alone, batched).map { abs($0 - $1) }.max()!, 1e-3 * alone.map(abs).max()!)
        XCTAssertGreaterThanOrEqual(saved, try encoder.encode("a picture of a tennis shoe against a turquoise background").count)
    }
}
