import BLAS
import Flux
import Foundation
import TextEncoder
import World

/// The shape of the small world's images as the transformer sees them: a 32×32 RGB scene is
/// space-to-depth'ed by 2 and FLUX-packed 2×2 into 64 tokens of 48 features (see `SceneLatent`).
public enum BaseModelSpec {
    public static let imageSize = 32
    public static let gridSide = 8
    public static var tokens: Int { gridSide * gridSide }
    public static let features = SceneLatent.featuresPerToken
    public static let imageIds = Packing.imageIds(gridHeight: gridSide, gridWidth: gridSide)
    /// Where the committed model lives, relative to the repository root.
    public static let defaultModelPath = "models/base"
    /// Sampling defaults of the committed model: 20 Euler steps with classifier-free guidance 3 (object shapes
    /// are recognised far more often with guidance than without; the erasure objective samples the same way).
    public static let defaultSteps = 20
    public static let defaultGuidance = 3.0

    /// The architecture: FLUX.1's, with MiniLM's 384-d text states and pooled embedding.
    public static func config(width: Int, headDim: Int = 64, doubleBlocks: Int, singleBlocks: Int) -> FluxConfig {
        let rest = headDim - 8
        return FluxConfig(inChannels: features, numLayers: doubleBlocks, numSingleLayers: singleBlocks,
                          attentionHeadDim: headDim, numAttentionHeads: width / headDim, jointAttentionDim: 384,
                          pooledProjectionDim: 384, guidanceEmbeds: false, axesDimsRope: [8, rest / 2, rest - rest / 2])
    }

    /// Starting noise x_T for one sample, a pure function of the seed.
    public static func noise(seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed ^ 0x6E6F_6973_655F_7854)
        return (0..<(tokens * features)).map { _ in Float(rng.normal()) }
    }
}

/// Text-to-image with the base model: prompts and seeds in, RGB scenes out. Classifier-free guidance
/// (v = v(∅) + s·(v(c) − v(∅))) when `guidanceScale` ≠ 1.
public final class Generator: @unchecked Sendable {
    public let model: FluxTransformer<Float>
    public let encoder: PromptEncoder
    public var steps: Int
    public var guidanceScale: Double
    public var maxBatch = 32

    public init(model: FluxTransformer<Float>, encoder: PromptEncoder, steps: Int, guidanceScale: Double) {
        self.model = model; self.encoder = encoder; self.steps = steps; self.guidanceScale = guidanceScale
    }

    /// Final packed latents [n, 64, 48] for prompts[i] with seeds[i].
    public func latents(prompts: [String], seeds: [UInt64], masks: MaskSet<Float> = MaskSet(),
                        progress: ((Int, Int) -> Void)? = nil) throws -> [[Float]] {
        precondition(prompts.count == seeds.count)
        return try latents(encodings: try prompts.map { try encoder.encode($0) }, seeds: seeds, masks: masks, progress: progress)
    }

    /// Final packed latents for already-encoded text (e.g. token sequences no caption spells).
    public func latents(encodings: [TextEncoding], seeds: [UInt64], masks: MaskSet<Float> = MaskSet(),
                        progress: ((Int, Int) -> Void)? = nil) throws -> [[Float]] {
        try run(encodings: encodings, seeds: seeds, masks: masks, progress: progress, record: nil)
    }

    /// A sampling run's path per prompt: the latent entering each step (x_T first) and the (guided)
    /// velocity of that step; the final latent is `latents[N−1] + dt·velocities[N−1]`.
    public struct Trajectory: Sendable {
        public var latents: [[Float]] = []
        public var velocities: [[Float]] = []
    }

    public func trajectories(encodings: [TextEncoding], seeds: [UInt64], masks: MaskSet<Float> = MaskSet(),
                             progress: ((Int, Int) -> Void)? = nil) throws -> [Trajectory] {
        var out = [Trajectory](repeating: Trajectory(), count: encodings.count)
        _ = try run(encodings: encodings, seeds: seeds, masks: masks, progress: progress) { k, x, v in
            out[k].latents.append(x); out[k].velocities.append(v)
        }
        return out
    }

    private func run(encodings: [TextEncoding], seeds: [UInt64], masks: MaskSet<Float>, progress: ((Int, Int) -> Void)?,
                     record: ((_ index: Int, _ x: [Float], _ v: [Float]) -> Void)?) throws -> [[Float]] {
        precondition(encodings.count == seeds.count)
        let schedule = try FlowMatchSchedule(steps: steps, shift: .none)
        let null = try encoder.encodeNull()
        let cfg = guidanceScale != 1
        let per = BaseModelSpec.tokens * BaseModelSpec.features
        var out: [[Float]] = []
        var start = 0
        while start < encodings.count {
            let n = min(maxBatch, encodings.count - start)
            let encs = Array(encodings[start..<(start + n)]) + (cfg ? Array(repeating: null, count: n) : [])
            let cond = try encoder.conditioning(encs, config: model.config, imageIds: BaseModelSpec.imageIds)
            let B = encs.count
            let x = Buffer<Float>(uninitialized: n * per)
            for k in 0..<n {
                BaseModelSpec.noise(seed: seeds[start + k]).withUnsafeBufferPointer { (x.p + k * per).update(from: $0.baseAddress!, count: per) }
            }
            let input = Buffer<Float>(uninitialized: B * per)
            for i in 0..<steps {
                let s = schedule.sigmas[i], dt = Float(schedule.sigmas[i + 1] - s)
                input.p.update(from: x.p, count: n * per)
                if cfg { (input.p + n * per).update(from: x.p, count: n * per) }
                let v = try model.forward(hidden: input.p, sigma: Array(repeating: s, count: B), cond: cond, masks: masks)
                let g = Float(guidanceScale)
                let guided = Buffer<Float>(uninitialized: n * per)
                for j in 0..<(n * per) { guided[j] = cfg ? v[n * per + j] + g * (v[j] - v[n * per + j]) : v[j] }
                if let record {
                    for k in 0..<n {
                        record(start + k, Array(UnsafeBufferPointer(start: x.p + k * per, count: per)),
                               Array(UnsafeBufferPointer(start: guided.p + k * per, count: per)))
                    }
                }
                for j in 0..<(n * per) { x[j] += dt * guided[j] }
                progress?(start * steps + (i + 1) * n, encodings.count * steps)
            }
            for k in 0..<n { out.append(Array(UnsafeBufferPointer(start: x.p + k * per, count: per))) }
            start += n
        }
        return out
    }

    public func images(prompts: [String], seeds: [UInt64], masks: MaskSet<Float> = MaskSet(),
                       progress: ((Int, Int) -> Void)? = nil) throws -> [RGBImage] {
        try latents(prompts: prompts, seeds: seeds, masks: masks, progress: progress).map(Self.image(fromLatent:))
    }

    public func images(encodings: [TextEncoding], seeds: [UInt64], masks: MaskSet<Float> = MaskSet(),
                       progress: ((Int, Int) -> Void)? = nil) throws -> [RGBImage] {
        try latents(encodings: encodings, seeds: seeds, masks: masks, progress: progress).map(Self.image(fromLatent:))
    }

    /// Packed tokens in [−1, 1] (clamped) → RGB image in [0, 1].
    public static func image(fromLatent l: [Float]) -> RGBImage {
        var img = SceneLatent.image(fromTokens: l, width: BaseModelSpec.imageSize, height: BaseModelSpec.imageSize)
        for i in img.data.indices { img.data[i] = min(max(img.data[i], 0), 1) }
        return img
    }
}
