import BLAS
import Foundation
import SafeTensors
import World

/// How the detector is trained.
public struct DetectorTrainingOptions: Codable, Equatable, Sendable {
    public var config: DetectorConfig = .standard
    public var steps: Int = 8000
    public var batch: Int = 64
    /// Peak learning rate of AdamW (linear warm-up, cosine decay to `minLRFraction`·lr).
    public var lr: Double = 2e-3
    public var warmup: Int = 200
    public var minLRFraction: Double = 0.02
    /// Decoupled weight decay (convolution and linear weights; not biases or group-norm scales).
    public var weightDecay: Double = 0.05
    /// Seeds the weights; the scenes come from the sampler (the CLI seeds both with the same value).
    public var seed: UInt64 = 0

    public init() {}

    public func validate() throws {
        try config.validate()
        guard steps >= 1, batch >= 1, warmup >= 0, lr > 0, minLRFraction >= 0, weightDecay >= 0 else {
            throw DetectorError.invalidArgument("training options out of range: steps and batch must be ≥ 1, lr > 0, the rest ≥ 0")
        }
    }
}

/// Per-step training statistics (means over the batch).
public struct DetectorStepStats: Sendable {
    public var loss: Double
    /// Cross-entropy of each head: class, object colour, background colour.
    public var headLosses: [Double]
    /// Batch accuracy of each head.
    public var headAccuracies: [Double]
}

/// Trains a `DetectorNet<Float>` on scenes drawn on the fly from a sampler: step t uses scenes
/// t·batch ..< (t+1)·batch, so no scene repeats and a run is a pure function of the options and the
/// sampler's seed. Loss = sum of the three heads' softmax cross-entropies. Each step splits the batch into
/// a fixed number of shards, run concurrently with their own gradient buffers and summed in shard order,
/// so results are bit-identical for any number of workers, and across a checkpoint.
public final class DetectorTrainer {
    public let options: DetectorTrainingOptions
    public let sampler: SceneSampler
    public let net: DetectorNet<Float>
    public private(set) var step = 0
    /// Seconds spent in `trainStep` over the whole run (kept across checkpoints).
    public var trainingSeconds: Double = 0

    static let shards = 8
    let shardCount: Int
    let spaces: [DetectorWorkspace<Float>]
    let grads: [Buffer<Float>]
    let m: Buffer<Float>, v: Buffer<Float>
    /// 1 for decayed parameters, else 0.
    let decayMask: Buffer<Float>
    let stats: Buffer<Double>

    public init(options: DetectorTrainingOptions, sampler: SceneSampler) throws {
        try options.validate()
        self.options = options
        self.sampler = sampler
        let net = try DetectorNet<Float>(config: options.config)
        net.initialize(seed: options.seed)
        self.net = net
        let S = min(Self.shards, options.batch)
        shardCount = S
        let cap = (options.batch + S - 1) / S
        spaces = (0..<S).map { _ in net.makeWorkspace(capacity: cap) }
        grads = (0..<S).map { _ in .zeros(net.parameterCount) }
        m = .zeros(net.parameterCount)
        v = .zeros(net.parameterCount)
        decayMask = .zeros(net.parameterCount)
        for t in net.tensors where t.name.hasSuffix(".weight") && !t.name.hasPrefix("norm") {
            (decayMask.p + t.offset).update(repeating: 1, count: t.count)
        }
        stats = .zeros(S * 7)
    }

    /// Learning rate of step `s` (0-based): linear warm-up over `warmup` steps, then cosine to min·lr.
    public func learningRate(at s: Int) -> Double {
        let o = options
        if s < o.warmup { return o.lr * Double(s + 1) / Double(o.warmup) }
        let t = Double(s - o.warmup) / Double(max(1, o.steps - o.warmup))
        let c = 0.5 * (1 + cos(Double.pi * min(1, t)))
        return o.lr * (o.minLRFraction + (1 - o.minLRFraction) * c)
    }

    /// The current weights as a detector (a copy).
    public func detector(metadata: [String: String] = [:]) -> SceneDetector {
        let copy = try! DetectorNet<Float>(config: options.config)
        copy.params.p.update(from: net.params.p, count: net.parameterCount)
        return SceneDetector(net: copy, metadata: metadata)
    }

    /// One AdamW step on the next batch.
    @discardableResult
    public func trainStep() -> DetectorStepStats {
        let t0 = Date()
        let B = options.batch, S = shardCount, first = step * B
        let heads = options.config.headSizes, total = options.config.headOutputs
        let inSize = net.inputSize, size = options.config.imageSize
        let scale = Float(1) / Float(B)
        let st = stats.p
        Parallel.run(S) { s in
            let lo = B * s / S, hi = B * (s + 1) / S, n = hi - lo
            let ws = spaces[s]
            var labels = [[Int]](repeating: [], count: n)
            for r in 0..<n {
                let scene = sampler.scene(first + lo + r)
                SceneDetector.load(scene.image, into: ws.input.p + r * inSize, size: size)
                labels[r] = [scene.classID, scene.objColor, scene.bgColor]
            }
            net.forward(ws, count: n)
            var loss = [Double](repeating: 0, count: 3), correct = [Double](repeating: 0, count: 3)
            for r in 0..<n {
                var off = 0
                for h in 0..<3 {
                    let lp = ws.logits.p + r * total + off
                    loss[h] += SoftmaxCrossEntropy.forwardBackward(lp, count: heads[h], label: labels[r][h], scale: scale,
                                                                    dlogits: ws.dlogits.p + r * total + off)
                    if SceneDetector.argmax(UnsafeBufferPointer(start: lp, count: heads[h])) == labels[r][h] { correct[h] += 1 }
                    off += heads[h]
                }
            }
            grads[s].zero()
            net.backward(ws, count: n, grad: grads[s].p)
            for h in 0..<3 { st[s * 7 + h] = loss[h]; st[s * 7 + 3 + h] = correct[h] }
        }
        update(lr: learningRate(at: step))
        step += 1
        var hl = [Double](repeating: 0, count: 3), ha = [Double](repeating: 0, count: 3)
        for s in 0..<S { for h in 0..<3 { hl[h] += st[s * 7 + h] / Double(B); ha[h] += st[s * 7 + 3 + h] / Double(B) } }
        trainingSeconds += Date().timeIntervalSince(t0)
        return DetectorStepStats(loss: hl.reduce(0, +), headLosses: hl, headAccuracies: ha)
    }

    /// AdamW (β = 0.9, 0.999, ε = 1e-8, bias-corrected) on the sum of the shard gradients.
    func update(lr: Double) {
        let t = Double(step + 1)
        let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
        let ic1 = Float(1 / (1 - pow(0.9, t))), ic2 = Float(1 / (1 - pow(0.999, t)))
        let lrF = Float(lr), wd = Float(lr * options.weightDecay)
        let gs = grads.map(\.p), p = net.params.p, mp = m.p, vp = v.p, mask = decayMask.p
        Parallel.forEachChunk(net.parameterCount, workPerItem: 4 * gs.count) { r in
            for i in r {
                var g: Float = 0
                for gk in gs { g += gk[i] }
                mp[i] = b1 * mp[i] + (1 - b1) * g
                vp[i] = b2 * vp[i] + (1 - b2) * g * g
                let mh = mp[i] * ic1, vh = vp[i] * ic2
                p[i] -= lrF * mh / (vh.squareRoot() + eps) + wd * mask[i] * p[i]
            }
        }
    }

    // MARK: Checkpoints

    /// Weights, AdamW moments, step, training time and options, written atomically.
    public func saveCheckpoint(to path: String) throws {
        let opts = try metadataJSON(options)
        var w = SafeTensorsWriter(metadata: SceneDetector.baseMetadata(options.config).merging([
            "kind": "checkpoint", "step": "\(step)", "options": opts, "sceneSeed": "\(sampler.seed)",
            "trainingSeconds": "\(trainingSeconds)",
        ]) { _, b in b })
        SceneDetector.add(net.params.p, of: net, to: &w, prefix: "")
        SceneDetector.add(m.p, of: net, to: &w, prefix: "adam.m.")
        SceneDetector.add(v.p, of: net, to: &w, prefix: "adam.v.")
        try w.write(to: path)
    }

    /// Restores a checkpoint of a run with the same options and scene seed.
    public func loadCheckpoint(from path: String) throws {
        let file = try SafeTensorsFile(path: path)
        let md = file.metadata
        guard md["kind"] == "checkpoint", let optsJSON = md["options"], let s = md["step"].flatMap(Int.init),
              let opts = try? JSONDecoder().decode(DetectorTrainingOptions.self, from: Data(optsJSON.utf8)) else {
            throw DetectorError.badFile(path: path, reason: "not a detector training checkpoint")
        }
        guard opts == options else {
            throw DetectorError.badFile(path: path, reason: "checkpoint was written with other training options: \(optsJSON)")
        }
        guard md["sceneSeed"] == "\(sampler.seed)" else {
            throw DetectorError.badFile(path: path, reason: "checkpoint was trained on scenes of seed \(md["sceneSeed"] ?? "?"), not \(sampler.seed)")
        }
        try SceneDetector.read(net.params.p, of: net, from: file, prefix: "")
        try SceneDetector.read(m.p, of: net, from: file, prefix: "adam.m.")
        try SceneDetector.read(v.p, of: net, from: file, prefix: "adam.v.")
        step = s
        trainingSeconds = md["trainingSeconds"].flatMap(Double.init) ?? 0
    }
}
