import BLAS
import Flux
import Foundation
import SafeTensors
import TextEncoder
import World

/// Hyper-parameters of `mce train-base`; stored in every checkpoint so a resumed run continues the same run.
public struct TrainingOptions: Codable, Equatable, Sendable {
    public var width = 256
    public var doubleBlocks = 2
    public var singleBlocks = 4
    public var steps = 20_000
    public var batch = 64
    public var lr = 3e-4
    public var warmup = 500
    public var minLRFraction = 0.1         // cosine decay to this fraction of lr
    public var weightDecay = 0.0
    public var emaDecay = 0.999
    public var captionDropout = 0.1
    public var gradClip = 1.0
    public var seed: UInt64 = 0
    public init() {}

    public var config: FluxConfig {
        BaseModelSpec.config(width: width, doubleBlocks: doubleBlocks, singleBlocks: singleBlocks)
    }

    func lr(at step: Int) -> Double {
        if step < warmup { return lr * Double(step + 1) / Double(warmup) }
        let t = Double(step - warmup) / Double(max(1, steps - warmup))
        return lr * (minLRFraction + (1 - minLRFraction) * 0.5 * (1 + Foundation.cos(Double.pi * min(1, t))))
    }
}

/// Rectified-flow training of the base model from scratch on the world's training scenes:
/// x_σ = (1−σ)·x₀ + σ·ε, target ε − x₀, σ ~ logit-normal(0, 1), MSE; AdamW, warm-up + cosine, gradient
/// clipping, EMA weights, captions dropped to the empty prompt. Deterministic in the seed; checkpoints
/// (weights, EMA, optimiser moments, step) are written atomically and a run resumes from them exactly.
public final class Trainer {
    public let options: TrainingOptions
    public let encoder: PromptEncoder
    public let scenes: SceneSampler
    public let model: FluxTransformer<Float>
    public let ema: FluxWeights<Float>
    public let optimizer: AdamW<Float>
    public private(set) var step = 0
    /// Planned run lengths and the steps where they took effect ("12000@0,8400@4400"); nil for a fresh run.
    public private(set) var schedule: String?
    let weightGrads: FluxWeights<Float>

    public init(options: TrainingOptions, encoder: PromptEncoder, scenes: SceneSampler) throws {
        self.options = options; self.encoder = encoder; self.scenes = scenes
        let cfg = options.config
        try cfg.validate()
        let w = FluxWeights<Float>.random(config: cfg, seed: options.seed)
        // adaLN-Zero (as in DiT): every block starts as the identity and the output as zero.
        for b in 0..<cfg.numLayers {
            let d = try w.doubleBlock(b)
            for l in [d.norm1, d.norm1Context] { l.w.zero(); l.b.zero() }
        }
        for b in 0..<cfg.numSingleLayers {
            let s = try w.singleBlock(b)
            s.norm.w.zero(); s.norm.b.zero()
        }
        for l in [w.top.normOut, w.top.projOut] { l.w.zero(); l.b.zero() }
        w.weightsChanged()
        model = FluxTransformer(weights: w)
        ema = FluxWeights<Float>.zeros(config: cfg)
        for (e, p) in zip(ema.allBuffers, w.allBuffers) { e.p.update(from: p.p, count: p.count) }
        optimizer = AdamW(lr: options.lr, weightDecay: options.weightDecay)
        weightGrads = FluxWeights<Float>.zeros(config: cfg)
    }

    /// One optimisation step on the next batch; returns the batch loss.
    /// Seconds spent per phase (data, text, model, optimiser) since the start, for `--profile`.
    public private(set) var phaseSeconds: [String: Double] = [:]
    private var phaseStart = DispatchTime.now().uptimeNanoseconds
    private func phase(_ name: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        phaseSeconds[name, default: 0] += Double(now - phaseStart) * 1e-9
        phaseStart = now
    }

    public func trainStep() throws -> Double {
        phaseStart = DispatchTime.now().uptimeNanoseconds
        let o = options, B = o.batch, per = BaseModelSpec.tokens * BaseModelSpec.features
        var captions: [String] = []
        let x0 = Buffer<Float>(uninitialized: B * per), noise = Buffer<Float>(uninitialized: B * per)
        var sigmas: [Double] = []
        for k in 0..<B {
            let index = step * B + k
            let scene = scenes.scene(index)
            var rng = SplitMix64(seed: o.seed &* 0x9E37_79B9 ^ UInt64(index) &* 0xD6E8_FEB8_6659_FD93)
            let drop = rng.uniform() < o.captionDropout
            captions.append(drop ? "" : scene.caption.text)
            SceneLatent.tokens(from: scene.image).withUnsafeBufferPointer { (x0.p + k * per).update(from: $0.baseAddress!, count: per) }
            for j in 0..<per { noise[k * per + j] = Float(rng.normal()) }
            sigmas.append(1 / (1 + Foundation.exp(-rng.normal())))   // logit-normal(0, 1)
        }
        let xt = Buffer<Float>(uninitialized: B * per), target = Buffer<Float>(uninitialized: B * per)
        for k in 0..<B {
            let s = Float(sigmas[k])
            for j in (k * per)..<((k + 1) * per) {
                xt[j] = (1 - s) * x0[j] + s * noise[j]
                target[j] = noise[j] - x0[j]
            }
        }
        phase("data")
        let encs = try encoder.encode(captions, allowUnknown: true)
        phase("text")
        let cond = try encoder.conditioning(encs, config: model.config, imageIds: BaseModelSpec.imageIds)
        weightGrads.zero()
        let grads = FluxGradients(config: model.config, batch: B, textTokens: cond.textTokens, imageTokens: cond.imageTokens,
                                  maskSites: [], weightGradients: weightGrads)
        let mse = Objectives.meanSquaredError(target: target)
        let loss = try model.valueAndGradient(hidden: xt.p, sigma: sigmas, cond: cond, grads: grads) { v in
            let (l, d) = try mse(v)
            return (l, d)
        }
        phase("model")
        guard loss.isFinite else { throw FluxError.badInput("training diverged at step \(step): loss is \(loss)") }
        let params = model.weights.allBuffers, g = weightGrads.allBuffers
        // Global-norm clipping.
        var sq = 0.0
        for b in g { sq += sumOfSquares(b) }
        let norm = sq.squareRoot()
        if norm > o.gradClip {
            let c = Float(o.gradClip / norm)
            for b in g {
                Parallel.forEachChunk(b.count) { r in for j in r { b[j] *= c } }
            }
        }
        optimizer.lr = o.lr(at: step)
        optimizer.update(params, g)
        model.weights.weightsChanged()
        let decay = Float(min(o.emaDecay, Double(1 + step) / Double(10 + step)))
        for (e, p) in zip(ema.allBuffers, params) {
            Parallel.forEachChunk(p.count, workPerItem: 3) { r in for j in r { e[j] = decay * e[j] + (1 - decay) * p[j] } }
        }
        phase("optimiser")
        step += 1
        return loss
    }

    // MARK: checkpoints

    public func saveCheckpoint(to path: String) throws {
        var w = SafeTensorsWriter(metadata: [
            "step": "\(step)", "options": try metadataJSON(options),
            "adam_step": "\(optimizer.state.step)", "schedule": schedule ?? "\(options.steps)@0",
        ])
        for (i, b) in model.weights.allBuffers.enumerated() { w.add("param.\(i)", shape: [b.count], floats: b.array) }
        for (i, b) in ema.allBuffers.enumerated() { w.add("ema.\(i)", shape: [b.count], floats: b.array) }
        for (i, b) in optimizer.state.moments.enumerated() { w.add("adam.\(i)", shape: [b.count], floats: b.array) }
        try w.write(to: path)
    }

    /// Restores a checkpoint written by `saveCheckpoint` with the same options; with `newLength` the saved
    /// run may have planned a different number of steps (the cosine schedule then continues from the current
    /// step towards the new end, and the change is recorded in the checkpoint's `schedule` metadata).
    public func loadCheckpoint(from path: String, newLength: Bool = false) throws {
        let f = try SafeTensorsFile(path: path)
        guard let json = f.metadata["options"], let saved = try? JSONDecoder().decode(TrainingOptions.self, from: Data(json.utf8)) else {
            throw FluxError.badInput("\(path) is not a train-base checkpoint (no options in its metadata)")
        }
        var comparable = saved
        if newLength { comparable.steps = options.steps }
        guard comparable == options else {
            throw FluxError.badInput("\(path) was written with different options (\(json)); resume with the same options or start a new --out folder")
        }
        func fill(_ prefix: String, _ bufs: [Buffer<Float>]) throws {
            for (i, b) in bufs.enumerated() {
                try f.decode("\(prefix).\(i)", into: b.buffer)
            }
        }
        try fill("param", model.weights.allBuffers)
        model.weights.weightsChanged()
        try fill("ema", ema.allBuffers)
        let nMoments = 2 * model.weights.allBuffers.count
        if f.contains("adam.0") {
            let moments = model.weights.allBuffers.map { Buffer<Float>.zeros($0.count) } + model.weights.allBuffers.map { Buffer<Float>.zeros($0.count) }
            precondition(moments.count == nMoments)
            try fill("adam", moments)
            optimizer.restore(step: Int(f.metadata["adam_step"] ?? "0") ?? 0, moments: moments)
        }
        step = Int(f.metadata["step"] ?? "0") ?? 0
        var history = f.metadata["schedule"] ?? "\(saved.steps)@0"
        if saved.steps != options.steps { history += ",\(options.steps)@\(step)" }
        schedule = history
    }
}

extension Trainer {
    /// The EMA weights and step of a `saveCheckpoint` file, or nil when the file is not such a checkpoint.
    public static func emaWeights(checkpoint path: String) throws -> (weights: FluxWeights<Float>, step: Int)? {
        guard path.hasSuffix(".safetensors"), let f = try? SafeTensorsFile(path: path), let json = f.metadata["options"],
              let o = try? JSONDecoder().decode(TrainingOptions.self, from: Data(json.utf8)), f.contains("ema.0") else { return nil }
        let w = FluxWeights<Float>.zeros(config: o.config)
        for (i, b) in w.allBuffers.enumerated() { try f.decode("ema.\(i)", into: b.buffer) }
        w.weightsChanged()
        return (w, Int(f.metadata["step"] ?? "0") ?? 0)
    }
}

/// Σ x² in Double, over worker chunks (each chunk sums in Float with four partial sums first).
func sumOfSquares(_ b: Buffer<Float>) -> Double {
    let chunks = max(1, min(Parallel.workerCount, b.count / 65_536))
    var partial = [Double](repeating: 0, count: chunks)
    partial.withUnsafeMutableBufferPointer { out in
        Parallel.run(chunks) { c in
            let lo = b.count * c / chunks, hi = b.count * (c + 1) / chunks
            var s = 0.0
            var i = lo
            while i < hi {
                let end = min(hi, i + 4096)
                var a: Float = 0
                while i < end { a += b[i] * b[i]; i += 1 }
                s += Double(a)
            }
            out[c] = s
        }
    }
    return partial.reduce(0, +)
}
