import BaseModel
import BLAS
import Flux
import Foundation
import SafeTensors

/// Hyper-parameters of an erasure run; stored in its checkpoints and mask file so a run resumes (and is
/// reported) exactly.
public struct ErasureOptions: Codable, Equatable, Sendable {
    public var concepts: [ConceptSpec] = []
    public var target: ErasureTarget = .deconcept
    public var beta = 1.0                    // weight of the preservation term
    public var samplingSteps = 20            // N: Euler steps of the sampler the loss sits on
    public var guidance = 1.0                // classifier-free guidance scale of that sampler (1 = off)
    public var sites: [String] = []          // diffusers site names
    public var relaxation: MaskRelaxation = .authors
    public var initLogit = 3.0
    public var lr = 0.5
    public var warmup = 5
    public var weightDecay = 0.01            // PyTorch's AdamW default, which the authors keep
    public var iterations = 60               // optimiser steps
    public var batch = 4                     // items per optimiser step (the authors accumulate 4)
    public var freshNoise = false            // false: one fixed x_T per prompt (the authors); true: new x_T per epoch
    public var seed: UInt64 = 0
    public init() {}

    public func maskSites(config: FluxConfig) throws -> [MaskSite] {
        guard !sites.isEmpty else { throw ErasureError.badArgument("--sites: no mask sites selected") }
        return try sites.map { name in
            guard let s = MaskSite(name: name) else { throw ErasureError.badArgument("--sites: unknown mask site '\(name)'") }
            try s.validate(for: config)
            return s
        }
    }

    /// Site names for kinds over every block of a config: `ff,ff_context,norm1_context` → each double block's.
    public static func expandSites(_ spec: [String], config: FluxConfig) throws -> [String] {
        var out: [String] = []
        for item in spec.flatMap({ $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }) where !item.isEmpty {
            if let kind = MaskSite.Kind(rawValue: item) {
                let n = kind.isSingleBlock ? config.numSingleLayers : config.numLayers
                guard n > 0 else { throw ErasureError.badArgument("--sites: the model has no \(kind.isSingleBlock ? "single" : "double")-stream blocks for '\(item)'") }
                out += (0..<n).map { MaskSite(kind, block: $0).description }
            } else if let site = MaskSite(name: item) {
                do { try site.validate(for: config) } catch { throw ErasureError.badArgument("--sites: \(error)") }
                out.append(site.description)
            } else {
                let kinds = MaskSite.Kind.allCases.map(\.rawValue).joined(separator: ", ")
                throw ErasureError.badArgument("--sites: unknown site '\(item)' (expected a kind — \(kinds) — or a name like transformer_blocks.0.ff)")
            }
        }
        var seen = Set<String>()
        return out.filter { seen.insert($0).inserted }
    }

    public static let defaultSiteKinds = ["ff", "ff_context", "norm1_context"]
}

/// One optimiser step's figures.
public struct ErasureStepLog: Codable, Sendable {
    public let iteration: Int
    public let eraseLoss: Double        // mean MSE of concept items to their targets
    public let preserveLoss: Double     // mean MSE of neutral items to the original samples
    public let loss: Double             // erase + β·preserve
    public let expectedMasked: Int      // units whose noise-free multiplier is < ½
}

/// Learns per-neuron mask logits so that the masked model's final N-step samples for concept prompts match
/// the original model's samples for their targets, and neutral prompts' samples stay as they were:
///   L = mean_c ‖F_θ(x_T, c) − F_θ'(x_T, target(c))‖² + β·mean_n ‖F_θ(x_T, n) − F_θ'(x_T, n)‖²
/// (means over elements, as torch's MSELoss). Gradients come from the checkpointed backprop through all N
/// steps; one hard-concrete draw per neuron per optimiser step is shared by the batch, the forward run and
/// its replay.
public final class Eraser {
    public let options: ErasureOptions
    public let model: FluxTransformer<Float>
    public let encoder: PromptEncoder
    public let items: [ErasureItem]
    public let sites: [MaskSite]
    public let schedule: FlowMatchSchedule
    public private(set) var logits: [MaskSite: Buffer<Float>] = [:]
    public private(set) var iteration = 0
    public private(set) var history: [ErasureStepLog] = []
    let optimizer: AdamW<Float>
    private var targetCache: [String: [Float]] = [:]

    public init(model: FluxTransformer<Float>, encoder: PromptEncoder, items: [ErasureItem], options: ErasureOptions) throws {
        guard options.beta >= 0, options.beta.isFinite else { throw ErasureError.badArgument("--beta must be ≥ 0, got \(options.beta)") }
        guard options.samplingSteps >= 1 else { throw ErasureError.badArgument("--sampling-steps must be ≥ 1, got \(options.samplingSteps)") }
        guard options.iterations >= 1, options.batch >= 1 else { throw ErasureError.badArgument("--iterations and --batch must be ≥ 1") }
        guard options.lr > 0, options.guidance.isFinite else { throw ErasureError.badArgument("--lr must be > 0 and --guidance finite") }
        guard items.contains(where: \.isConcept) else { throw ErasureError.badInput("no concept prompts: nothing to erase") }
        self.options = options; self.model = model; self.encoder = encoder; self.items = items
        sites = try options.maskSites(config: model.config)
        schedule = try FlowMatchSchedule(steps: options.samplingSteps, shift: .none)
        for s in sites { logits[s] = Buffer(Array(repeating: Float(options.initLogit), count: s.width(model.config))) }
        optimizer = AdamW(lr: options.lr, weightDecay: options.weightDecay)
    }

    var perSample: Int { model.config.inChannels * BaseModelSpec.tokens }

    /// The items of optimiser step `it` (epoch order; the list is already interleaved concept/neutral).
    public func batch(at it: Int) -> [(item: ErasureItem, epoch: Int)] {
        (0..<options.batch).map { j in
            let k = it * options.batch + j
            return (items[k % items.count], k / items.count)
        }
    }

    func noiseSeed(_ item: ErasureItem, epoch: Int) -> UInt64 {
        options.freshNoise ? item.seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15 : item.seed
    }

    // MARK: targets of the original model

    /// The original (unmasked) model's final latents for (prompt, noise seed) pairs, computed once.
    public func originalSamples(_ requests: [(prompt: String, seed: UInt64)], progress: ((Int, Int) -> Void)? = nil) throws -> [[Float]] {
        let missing = Array(Set(requests.map { key($0.prompt, $0.seed) }).subtracting(targetCache.keys)).sorted()
        if !missing.isEmpty {
            let pending = requests.filter { missing.contains(key($0.prompt, $0.seed)) }
            var unique: [(String, UInt64)] = []
            var seen = Set<String>()
            for r in pending where seen.insert(key(r.prompt, r.seed)).inserted { unique.append((r.prompt, r.seed)) }
            let gen = Generator(model: model, encoder: encoder, steps: options.samplingSteps, guidanceScale: options.guidance)
            let out = try gen.latents(prompts: unique.map(\.0), seeds: unique.map(\.1), progress: progress)
            for (r, l) in zip(unique, out) { targetCache[key(r.0, r.1)] = l }
        }
        return requests.map { targetCache[key($0.prompt, $0.seed)]! }
    }

    private func key(_ p: String, _ s: UInt64) -> String { "\(s)|\(p)" }

    /// Precomputes every target the run will need (all of them with fixed noise; the first epoch's otherwise).
    public func prepareTargets(progress: ((Int, Int) -> Void)? = nil) throws {
        let reqs = items.map { ($0.targetPrompt, noiseSeed($0, epoch: 0)) }
        _ = try originalSamples(reqs, progress: progress)
    }

    // MARK: masks

    /// Multipliers and their derivatives for optimiser step `it` (a pure function of seed, step and site).
    func sampledMasks(at it: Int, logits: [MaskSite: Buffer<Float>]) -> (MaskSet<Float>, [MaskSite: [Float]]) {
        var set = MaskSet<Float>(), derivs: [MaskSite: [Float]] = [:]
        for (si, s) in sites.enumerated() {
            var rng = SplitMix64(seed: options.seed ^ 0x4D41_534B ^ (UInt64(it) &* 0x1_0000_0001) ^ (UInt64(si) &* 0x9E37_79B9_7F4A_7C15))
            let l = logits[s]!
            let m = Buffer<Float>(uninitialized: l.count)
            var d = [Float](repeating: 0, count: l.count)
            for j in 0..<l.count {
                let (v, dv) = options.relaxation.sample(logit: Double(l[j]), u: rng.uniform())
                m[j] = Float(v); d[j] = Float(dv)
            }
            set[s] = m; derivs[s] = d
        }
        return (set, derivs)
    }

    /// Current logits as plain arrays.
    public var logitArrays: [MaskSite: [Float]] { logits.mapValues(\.array) }

    /// Units whose noise-free multiplier is below ½ (what threshold-0 binarisation would drop).
    public var expectedMasked: Int {
        logits.values.reduce(0) { n, l in n + l.array.filter { options.relaxation.expected(logit: Double($0)) < 0.5 }.count }
    }

    // MARK: optimisation

    /// One optimiser step on the next batch; returns its figures.
    @discardableResult
    public func step(progress: ((Int, Int) -> Void)? = nil) throws -> ErasureStepLog {
        let it = iteration
        let r = try lossAndGradient(at: it, logits: logits, progress: progress)
        // AdamW on the logits (constant rate after a linear warm-up).
        optimizer.lr = options.lr * min(1, Double(it + 1) / Double(max(1, options.warmup)))
        optimizer.update(sites.map { logits[$0]! }, sites.map { r.grads[$0]! })
        iteration += 1
        let log = ErasureStepLog(iteration: iteration, eraseLoss: r.erase, preserveLoss: r.preserve, loss: r.loss,
                                 expectedMasked: expectedMasked)
        history.append(log)
        return log
    }

    /// The objective of optimiser step `iteration` and its gradient w.r.t. the logits, without updating
    /// anything; `perturb` adds δ to one logit first (for finite-difference checks).
    public func probe(iteration it: Int, perturb: (MaskSite, Int, Float)? = nil) throws -> (loss: Double, grads: [MaskSite: [Float]]) {
        var l = logits.mapValues { $0.copy() }
        if let (s, j, d) = perturb { l[s]![j] += d }
        let r = try lossAndGradient(at: it, logits: l)
        return (r.loss, r.grads.mapValues(\.array))
    }

    struct Evaluation { let loss, erase, preserve: Double; let grads: [MaskSite: Buffer<Float>] }

    func lossAndGradient(at it: Int, logits: [MaskSite: Buffer<Float>], progress: ((Int, Int) -> Void)? = nil) throws -> Evaluation {
        let chosen = batch(at: it)
        let B = chosen.count, per = perSample
        let targets = try originalSamples(chosen.map { ($0.item.targetPrompt, noiseSeed($0.item, epoch: $0.epoch)) })
        let start = Buffer<Float>(uninitialized: B * per)
        for (k, c) in chosen.enumerated() {
            BaseModelSpec.noise(seed: noiseSeed(c.item, epoch: c.epoch)).withUnsafeBufferPointer {
                (start.p + k * per).update(from: $0.baseAddress!, count: per)
            }
        }
        let guided = options.guidance != 1
        var encs = try chosen.map { try encoder.encode($0.item.prompt, allowUnknown: true) }
        if guided { encs += Array(repeating: try encoder.encodeNull(), count: B) }
        let cond = try encoder.conditioning(encs, config: model.config, imageIds: BaseModelSpec.imageIds)
        let (masks, derivs) = sampledMasks(at: it, logits: logits)
        let nc = chosen.filter { $0.item.isConcept }.count, nn = B - nc
        var eraseLoss = 0.0, preserveLoss = 0.0
        let objective: CheckpointedSampler<Float>.Objective = { x0 in
            let dx = Buffer<Float>(uninitialized: x0.count)
            var total = 0.0
            eraseLoss = 0; preserveLoss = 0
            for (k, c) in chosen.enumerated() {
                let w = c.item.isConcept ? 1 / Double(nc) : self.options.beta / Double(max(nn, 1))
                let t = targets[k]
                var s = 0.0
                let scale = Float(2 * w / Double(per))
                for j in 0..<per {
                    let e = x0[k * per + j] - t[j]
                    s += Double(e) * Double(e)
                    dx[k * per + j] = scale * e
                }
                let mse = s / Double(per)
                if c.item.isConcept { eraseLoss += mse / Double(nc) } else { preserveLoss += mse / Double(nn) }
                total += w * mse
            }
            return (total, dx)
        }
        let sampler = CheckpointedSampler(transformer: model, cond: cond, schedule: schedule, masks: masks, guidanceScale: options.guidance)
        let result = try sampler.gradient(start: start, maskGradients: sites, objective: objective, progress: progress)
        guard result.loss.isFinite else { throw ErasureError.badInput("erasure diverged at iteration \(it): loss is \(result.loss)") }
        // dL/dλ = dL/dm · dm/dλ.
        var grads: [MaskSite: Buffer<Float>] = [:]
        for s in sites {
            let dm = result.grads.masks[s]!, d = derivs[s]!
            let g = Buffer<Float>(uninitialized: d.count)
            for j in 0..<d.count { g[j] = dm[j] * d[j] }
            grads[s] = g
        }
        return Evaluation(loss: result.loss, erase: eraseLoss, preserve: preserveLoss, grads: grads)
    }

    // MARK: checkpoints

    public func saveState(to path: String) throws {
        var w = SafeTensorsWriter(metadata: [
            "options": String(decoding: try JSONEncoder().encode(options), as: UTF8.self),
            "iteration": "\(iteration)", "adam_step": "\(optimizer.state.step)",
            "history": String(decoding: try JSONEncoder().encode(history), as: UTF8.self),
        ])
        for s in sites { w.add("logits.\(s)", shape: [logits[s]!.count], floats: logits[s]!.array) }
        for (i, m) in optimizer.state.moments.enumerated() { w.add("adam.\(i)", shape: [m.count], floats: m.array) }
        do { try w.write(to: path) } catch { throw ErasureError.io("cannot write \(path): \(error)") }
    }

    public func loadState(from path: String) throws {
        let f: SafeTensorsFile
        do { f = try SafeTensorsFile(path: path) } catch { throw ErasureError.io("cannot read erasure state \(path): \(error)") }
        guard let json = f.metadata["options"], let saved = try? JSONDecoder().decode(ErasureOptions.self, from: Data(json.utf8)) else {
            throw ErasureError.badInput("\(path) is not an mce erase state file (no options in its metadata)")
        }
        guard saved == options else {
            throw ErasureError.badInput("\(path) was written with different options; resume with the same arguments or use a new --out folder")
        }
        for s in sites { try f.decode("logits.\(s)", into: logits[s]!.buffer) }
        if f.contains("adam.0") {
            let moments = (sites + sites).map { Buffer<Float>.zeros($0.width(model.config)) }
            for (i, m) in moments.enumerated() { try f.decode("adam.\(i)", into: m.buffer) }
            optimizer.restore(step: Int(f.metadata["adam_step"] ?? "0") ?? 0, moments: moments)
        }
        iteration = Int(f.metadata["iteration"] ?? "0") ?? 0
        if let h = f.metadata["history"], let logs = try? JSONDecoder().decode([ErasureStepLog].self, from: Data(h.utf8)) {
            history = logs
        }
    }
}

/// What an erase run cost: wall time of the optimisation (targets + iterations of this invocation) and the
/// process's peak resident memory at its end.
public struct ErasureCost: Codable, Sendable {
    public let eraseSeconds: Double
    public let peakRSSMiB: Double
    public init(eraseSeconds: Double, peakRSSMiB: Double) { self.eraseSeconds = eraseSeconds; self.peakRSSMiB = peakRSSMiB }

    /// Peak resident set size of this process so far, in MiB (getrusage; Linux reports KiB, macOS bytes).
    public static func peakRSSMiB() -> Double {
        var u = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return Double(u.ru_maxrss) / 1024
        #else
        getrusage(RUSAGE_SELF, &u)
        return Double(u.ru_maxrss) / (1024 * 1024)
        #endif
    }
}
