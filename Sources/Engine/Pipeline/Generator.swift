import BLAS
import Flux
import Foundation
import TextEncoder

/// Where a model's samples live: the packed latent's size, the image tokens' positions and the starting noise.
/// A subject of erasure (the world's base model, a FLUX.1 pipeline) provides one.
public protocol LatentSpace: AnyObject {
    /// Values of one sample's packed latent (image tokens × channels).
    var latentCount: Int { get }
    /// Positions of the image tokens (`img_ids`, 3 per token).
    var imageIds: [Double] { get }
    /// Starting noise x_T of one sample, a pure function of the seed.
    func noise(seed: UInt64) -> [Float]
}

/// What is wrong with a classifier-free guidance scale as `--guidance`, or nil: it must be finite and ≥ 0
/// (1 = off, 0 = the empty prompt only).
public func guidanceProblem(_ scale: Double) -> String? {
    scale.isFinite && scale >= 0 ? nil : "--guidance must be a finite number ≥ 0 (1 = off), got \(scale)"
}

/// Text-to-latent sampling: prompts and seeds in, final packed latents out, with N Euler steps of the
/// flow-matching schedule and classifier-free guidance (v = v(∅) + s·(v(c) − v(∅))) when `guidanceScale` ≠ 1.
/// The steps are `Euler.step` and `Guidance.combine`, the same the checkpointed backward replays.
public final class Generator: @unchecked Sendable {
    public let model: FluxTransformer<Float>
    public let encoder: PromptEncoder
    public let space: LatentSpace
    public var steps: Int
    public var guidanceScale: Double
    public var maxBatch = 32

    public init(model: FluxTransformer<Float>, encoder: PromptEncoder, space: LatentSpace, steps: Int, guidanceScale: Double) {
        self.model = model; self.encoder = encoder; self.space = space; self.steps = steps; self.guidanceScale = guidanceScale
    }

    /// Final packed latents for prompts[i] with seeds[i].
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
        let per = space.latentCount
        var out: [[Float]] = []
        var start = 0
        while start < encodings.count {
            let n = min(maxBatch, encodings.count - start)
            let encs = Array(encodings[start..<(start + n)]) + (cfg ? Array(repeating: null, count: n) : [])
            let cond = try encoder.conditioning(encs, config: model.config, imageIds: space.imageIds)
            let B = encs.count
            let x = Buffer<Float>(uninitialized: n * per)
            for k in 0..<n {
                space.noise(seed: seeds[start + k]).withUnsafeBufferPointer { (x.p + k * per).update(from: $0.baseAddress!, count: per) }
            }
            let input = Buffer<Float>(uninitialized: B * per)
            for i in 0..<steps {
                let s = schedule.sigmas[i], dt = Float(schedule.sigmas[i + 1] - s)
                if cfg { Guidance.duplicate(x.p, count: n * per, into: input.p) } else { input.p.update(from: x.p, count: n * per) }
                let v = try model.forward(hidden: input.p, sigma: Array(repeating: s, count: B), cond: cond, masks: masks)
                let guided = Buffer<Float>(uninitialized: n * per)
                if cfg {
                    Guidance.combine(v.p, count: n * per, scale: Float(guidanceScale), into: guided.p)
                } else {
                    guided.p.update(from: v.p, count: n * per)
                }
                if let record {
                    for k in 0..<n {
                        record(start + k, Array(UnsafeBufferPointer(start: x.p + k * per, count: per)),
                               Array(UnsafeBufferPointer(start: guided.p + k * per, count: per)))
                    }
                }
                Euler.step(x.p, velocity: guided.p, dt: dt, count: n * per)
                progress?(start * steps + (i + 1) * n, encodings.count * steps)
            }
            for k in 0..<n { out.append(Array(UnsafeBufferPointer(start: x.p + k * per, count: per))) }
            start += n
        }
        return out
    }
}
