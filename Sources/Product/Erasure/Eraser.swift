import BLAS
import Flux
import Foundation
import Pipeline
import SafeTensors
import TextEncoder

/// Hyper-parameters of an erasure run; stored in its checkpoints and mask file so a run resumes (and is
/// reported) exactly.
public struct ErasureOptions: Codable, Equatable, Sendable {
    public var method: ErasureMethod = .mask
    public var concepts: [ConceptSpec] = []
    public var target: ErasureTarget = .deconcept
    public var beta = 1.0                    // weight of the preservation term
    public var samplingSteps = 20            // N: Euler steps of the sampler the loss sits on
    public var guidance = 1.0                // classifier-free guidance scale of that sampler (1 = off)
    public var sites: [Site] = []            // transformer sites, then text-encoder sites (stored by name)
    public var relaxation: MaskRelaxation = .authors
    public var initLogit = 3.0
    public var lr = 0.5
    public var warmup = 5
    /// After the warm-up: constant (nil, the authors') or cosine decay to 0 at the last iteration, which lets the
    /// logits settle instead of drifting at full speed to the end. Optional so that older files still decode.
    public var lrSchedule: LRSchedule? = nil
    public var weightDecay = 0.01            // PyTorch's AdamW default, which the authors keep
    /// AdamW's ε; nil is PyTorch's 1e-8, which the authors keep. Mask-logit gradients are ~1e-6–1e-4, so at
    /// 1e-8 Adam moves a logit at full speed however small its gradient; a larger ε moves only the units
    /// with large gradients (smaller masks). Optional so that files written before it existed still decode.
    public var adamEps: Double? = nil
    /// Weight γ of an extra term for text-encoder sites: γ·(mean over `textPreservePrompts` neutral captions of
    /// the squared change of their text-encoder outputs (hidden states and pooled embedding, as the transformer's
    /// first layers read them) + the same for the null prompt); see `Eraser.textPreservation`. nil or 0: none
    /// (the authors' objective). Optional so that files written before it existed still decode.
    public var textPreserve: Double? = nil
    public var textPreservePrompts: Int? = nil
    /// Weight κ of a per-unit price for closing text-encoder units: κ·Σ_j w_j·(1 − m_j), with w_j what closing unit
    /// j alone changes the neutral captions' outputs by, measured as the text-preservation term measures change
    /// (its Gauss–Newton diagonal, estimated once; see `Eraser.textUnitCosts`). The quadratic term has no gradient
    /// until damage is done; this one charges each unit from the first step, so a unit closes only where the
    /// concept's pull on it outweighs its price. nil or 0: none. Optional so that older files still decode.
    public var unitCost: Double? = nil
    /// What a closed text-encoder unit emits: 0 (nil, the authors' masking) or its mean output over the neutral
    /// captions of the text-preservation term (mean ablation), so closing a unit removes what it says about a
    /// token without shifting every other prompt's encoding by its average contribution. Foldable: the baked
    /// encoder adds the mean times the unit's column to the down projection's bias. Optional so that older
    /// files still decode.
    public var textAblation: TextAblation? = nil
    public var iterations = 60               // optimiser steps
    /// The last `binaryFinish` optimiser steps run the binarised masks (λ > `finishThreshold`) forward, with the
    /// noise-free relaxation's derivative as a straight-through gradient. The relaxed masks half-open the units
    /// near the threshold that binarisation closes; these steps let the objective see and decide them. nil or 0:
    /// none (the authors'). Optional so that older files still decode.
    public var binaryFinish: Int? = nil
    public var finishThreshold: Double? = nil    // the binarisation's threshold (nil: 0, the authors')
    public var batch = 4                     // items per optimiser step (the authors accumulate 4)
    public var freshNoise = false            // false: one fixed x_T per prompt (the authors); true: new x_T per epoch
    public var seed: UInt64 = 0
    /// Independent training runs of the mask, with seeds seed, seed + 1, …: prompts, noise and mask draws; the
    /// mean of their logits is binarised (stability selection). Most units one run closes are pushed there by
    /// that run's noise rather than by the concept, and different ones in every run. nil or 1: one run.
    /// Optional so that older files still decode.
    public var restarts: Int? = nil
    public var esdEta = 1.0                  // ESD's negative-guidance strength η
    public init() {}

    /// Options of restart r (0-based): the same, with that run's seed.
    public func restart(_ r: Int) -> ErasureOptions {
        var o = self
        o.seed = seed &+ UInt64(r)
        return o
    }

    public enum LRSchedule: String, Codable, Sendable, CaseIterable { case constant, cosine }
    public enum TextAblation: String, Codable, Sendable, CaseIterable { case zero, mean }
    public var effectiveTextAblation: TextAblation { textAblation ?? .zero }

    /// Learning rate of optimiser step `it` (0-based): linear warm-up, then constant or cosine to 0.
    public func learningRate(at it: Int) -> Double {
        let w = max(1, warmup)
        if it < w { return lr * Double(it + 1) / Double(w) }
        switch lrSchedule ?? .constant {
        case .constant: return lr
        case .cosine:
            let t = Double(it - w + 1) / Double(max(1, iterations - w))
            return lr * 0.5 * (1 + cos(Double.pi * min(1, t)))
        }
    }

    public var effectiveAdamEps: Double { adamEps ?? 1e-8 }
    /// Whether optimiser step `it` (0-based) runs the binarised masks (see `binaryFinish`).
    public func isBinaryStep(_ it: Int) -> Bool { it >= iterations - (binaryFinish ?? 0) }
    public var effectiveTextPreserve: Double { textPreserve ?? 0 }
    public var effectiveTextPreservePrompts: Int { textPreservePrompts ?? 200 }
    public var effectiveUnitCost: Double { unitCost ?? 0 }
    /// Rademacher probes of the unit-cost estimate: each unit's w_j has a relative error of about √(2/probes) or less.
    public static let unitCostProbes = 32

    /// The transformer's mask sites among `sites`, checked against the model.
    public func maskSites(config: FluxConfig) throws -> [MaskSite] {
        guard !sites.isEmpty else { throw ErasureError.badArgument("--sites: no mask sites selected") }
        return try sites.compactMap(\.transformerSite).map { s in
            try s.validate(for: config)
            return s
        }
    }

    /// The text-encoder layers whose feed-forward units `sites` masks, in order.
    public var textEncoderLayers: [Int] { sites.compactMap(\.textLayer) }

    /// `--sites` parsed: kinds over every block of a config (`ff,ff_context,norm1_context` → each double block's;
    /// `text_ff` → each of the text encoder's `textEncoderLayers` layers) and single site names, without repeats.
    public static func expandSites(_ spec: [String], config: FluxConfig, textEncoderLayers: Int) throws -> [Site] {
        var out: [Site] = []
        for item in spec.flatMap({ $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }) where !item.isEmpty {
            if item == TextEncoderSite.kind {
                out += (0..<textEncoderLayers).map { Site.textEncoder(layer: $0) }
            } else if let l = TextEncoderSite.layer(of: item) {
                guard l < textEncoderLayers else {
                    throw ErasureError.badArgument("--sites: '\(item)' does not exist: the text encoder has \(textEncoderLayers) layers")
                }
                out.append(.textEncoder(layer: l))
            } else if let kind = MaskSite.Kind(rawValue: item) {
                let n = kind.isSingleBlock ? config.numSingleLayers : config.numLayers
                guard n > 0 else { throw ErasureError.badArgument("--sites: the model has no \(kind.isSingleBlock ? "single" : "double")-stream blocks for '\(item)'") }
                out += (0..<n).map { Site.transformer(MaskSite(kind, block: $0)) }
            } else if let site = MaskSite(name: item) {
                do { try site.validate(for: config) } catch { throw ErasureError.badArgument("--sites: \(error)") }
                out.append(.transformer(site))
            } else {
                let kinds = (MaskSite.Kind.allCases.map(\.rawValue) + [TextEncoderSite.kind]).joined(separator: ", ")
                throw ErasureError.badArgument("--sites: unknown site '\(item)' (expected a kind — \(kinds) — or a name like transformer_blocks.0.ff or \(TextEncoderSite.name(layer: 0)))")
            }
        }
        var seen = Set<Site>()
        return out.filter { seen.insert($0).inserted }
    }

    /// The sites the authors mask: feed-forward units of both streams and the text stream's modulation outputs.
    public static let authorsSiteKinds = ["ff", "ff_context", "norm1_context"]
    /// Weight γ of the text-preservation term when text-encoder sites are masked and none is given. 3: with the anchor
    /// target it cuts the other captions' change from 16–20% (γ 1) to 12–13%, and the λ > 0.5 binarisation below
    /// brings back the erasure it costs (docs/results.md).
    public static let defaultTextPreserve = 3.0
    /// Binarisation threshold when text-encoder sites are masked and none is given: keep λ > 0.5. At γ 3 the
    /// units the concept pulls to (0, 0.5] at the last step still carry it (threshold 0: ACC 0.06–0.19).
    public static let defaultTextThreshold = 0.5

    /// The binarisation when none is given: λ > `defaultTextThreshold` with text-encoder sites, else the
    /// authors' λ > 0.
    public static func defaultBinarisation(textEncoderSites: Bool) -> Binarisation {
        .threshold(textEncoderSites ? defaultTextThreshold : 0)
    }
}

/// One optimiser step's figures.
public struct ErasureStepLog: Codable, Sendable {
    public let iteration: Int
    public let eraseLoss: Double        // mean MSE of concept items to their targets
    public let preserveLoss: Double     // mean MSE of neutral items to the original samples
    public let loss: Double             // erase + β·preserve
    public let expectedMasked: Int      // units whose noise-free multiplier is < ½ (0 for weight methods)
    /// The text-preservation term (γ included; nil when the run has none).
    public var textPreserveLoss: Double? = nil
    public var unitCostLoss: Double? = nil
}

/// Learns what `options.method` changes so that the model forgets the concepts. For `mask` (the product's
/// method): per-neuron mask logits such that the masked model's final N-step samples for concept prompts
/// match the original model's samples for their targets, and neutral prompts' samples stay as they were:
///   L = mean_c ‖F_θ(x_T, c) − F_θ'(x_T, target(c))‖² + β·mean_n ‖F_θ(x_T, n) − F_θ'(x_T, n)‖²
/// (means over elements, as torch's MSELoss). Gradients come from the checkpointed backprop through all N
/// steps; one hard-concrete draw per neuron per optimiser step is shared by the batch, the forward run and
/// its replay. The baselines (`per-step`, `finetune`, `esd`) share prompts, targets and optimiser.
public final class Eraser {
    public let options: ErasureOptions
    /// What is erased from: the transformer, its prompt conditioning, latent space and noise.
    public let subject: ErasureSubject
    /// The original model: targets come from it, and mask methods train masks on it.
    public let model: FluxTransformer<Float>
    /// The model whose weights a weight method trains (a copy); the original for mask methods.
    public let trained: FluxTransformer<Float>
    public let encoder: PromptEncoder
    public let items: [ErasureItem]
    /// Every site the mask methods learn, in draw order: the transformer's, then the text encoder's.
    public let sites: [Site]
    /// The transformer's sites among them (what the engine's `MaskSet` holds); none for ESD.
    public let transformerSites: [MaskSite]
    /// Text-encoder layers whose feed-forward units are masked (mask method only).
    public let textLayers: [Int]
    /// Neutral captions the text-preservation term keeps, and their original encodings.
    public let textAnchors: [String]
    private var anchorEncodings: [TextEncoding] = []
    private var unitCostCache: [Int: [Float]]?
    /// Per text-encoder layer, what a closed unit emits (mean ablation; empty for zero ablation).
    public let textFill: [Int: [Float]]
    public let schedule: FlowMatchSchedule
    /// One logit per unit and site (mask methods).
    public private(set) var logits: [Site: Buffer<Float>] = [:]
    public private(set) var iteration = 0
    public private(set) var history: [ErasureStepLog] = []
    let optimizer: AdamW<Float>
    /// Weight methods: the trained tensors, and the gradient accumulator they are read from.
    public let trainable: [(name: String, buffer: Buffer<Float>)]
    let weightGrads: FluxWeights<Float>?
    let trainableGrads: [Buffer<Float>]
    private var targetCache: [String: [Float]] = [:]
    private var trajectoryCache: [String: Generator.Trajectory] = [:]

    public init(subject: ErasureSubject, items: [ErasureItem], options: ErasureOptions) throws {
        let model = subject.transformer, encoder = subject.encoder
        guard options.beta >= 0, options.beta.isFinite else { throw ErasureError.badArgument("--beta must be ≥ 0, got \(options.beta)") }
        guard options.samplingSteps >= 1 else { throw ErasureError.badArgument("--sampling-steps must be ≥ 1, got \(options.samplingSteps)") }
        guard options.iterations >= 1, options.batch >= 1 else { throw ErasureError.badArgument("--iterations and --batch must be ≥ 1") }
        guard options.lr > 0, options.guidance.isFinite else { throw ErasureError.badArgument("--lr must be > 0 and --guidance finite") }
        guard options.esdEta.isFinite else { throw ErasureError.badArgument("--eta must be finite") }
        guard options.effectiveAdamEps > 0, options.effectiveAdamEps.isFinite else {
            throw ErasureError.badArgument("--adam-eps must be > 0 and finite, got \(options.effectiveAdamEps)")
        }
        guard (options.binaryFinish ?? 0) >= 0, (options.binaryFinish ?? 0) <= options.iterations else {
            throw ErasureError.badArgument("--binary-finish must be between 0 and the iterations (\(options.iterations)), got \(options.binaryFinish ?? 0)")
        }
        guard (options.finishThreshold ?? 0).isFinite else {
            throw ErasureError.badArgument("--binarise: the binary finish needs a finite threshold, got \(options.finishThreshold ?? 0)")
        }
        guard items.contains(where: \.isConcept) else { throw ErasureError.badInput("no concept prompts: nothing to erase") }
        self.options = options; self.subject = subject; self.model = model; self.encoder = encoder; self.items = items
        transformerSites = options.method == .esd ? [] : try options.maskSites(config: model.config)
        textLayers = options.textEncoderLayers
        sites = transformerSites.map(Site.transformer) + textLayers.map { Site.textEncoder(layer: $0) }
        if !textLayers.isEmpty {
            guard options.method == .mask else {
                throw ErasureError.badArgument("--sites: text-encoder sites (\(TextEncoderSite.kind)) are learnt by the mask method only, not \(options.method.rawValue)")
            }
            if let bad = textLayers.first(where: { $0 >= encoder.miniLM.layerCount }) {
                throw ErasureError.badArgument("--sites: '\(TextEncoderSite.name(layer: bad))' does not exist: the text encoder has \(encoder.miniLM.layerCount) layers")
            }
        }
        guard options.effectiveTextPreserve >= 0, options.effectiveTextPreserve.isFinite, options.effectiveTextPreservePrompts >= 1 else {
            throw ErasureError.badArgument("--text-preserve must be ≥ 0 and finite and --text-preserve-prompts ≥ 1")
        }
        guard options.effectiveUnitCost >= 0, options.effectiveUnitCost.isFinite else {
            throw ErasureError.badArgument("--unit-cost must be ≥ 0 and finite, got \(options.effectiveUnitCost)")
        }
        guard options.effectiveUnitCost == 0 || !textLayers.isEmpty else {
            throw ErasureError.badArgument("--unit-cost prices text-encoder units: it needs text-encoder sites (--sites …,\(TextEncoderSite.kind))")
        }
        if (options.effectiveTextPreserve > 0 || options.effectiveUnitCost > 0 || options.effectiveTextAblation == .mean) && !textLayers.isEmpty {
            textAnchors = try subject.neutralCaptions(count: options.effectiveTextPreservePrompts, concepts: options.concepts,
                                                      target: options.target, seed: options.seed ^ 0x7E47)
        } else {
            textAnchors = []
        }
        if options.effectiveTextAblation == .mean && !textLayers.isEmpty {
            let m = encoder.miniLM
            let means = try m.meanFeedForwardActivations(batch: textAnchors.map { try m.tokenIds($0, allowUnknown: true) })
            let layers = Set(textLayers)
            textFill = means.filter { layers.contains($0.key) }
        } else {
            textFill = [:]
        }
        schedule = try FlowMatchSchedule(steps: options.samplingSteps, shift: .none)
        if options.method.learnsMasks {
            trained = model
            for s in sites {
                logits[s] = Buffer(Array(repeating: Float(options.initLogit), count: s.width(model.config, textUnits: encoder.miniLM.intermediateSize)))
            }
            trainable = []; weightGrads = nil; trainableGrads = []
        } else {
            trained = FluxTransformer(weights: try model.weights.residentCopy())
            trainable = try TrainableLayers.select(trained.weights, method: options.method, sites: transformerSites)
            let g = FluxWeights<Float>.zeros(config: model.config)
            weightGrads = g
            trainableGrads = try TrainableLayers.select(g, method: options.method, sites: transformerSites).map(\.buffer)
        }
        optimizer = AdamW(lr: options.lr, eps: options.effectiveAdamEps,
                          weightDecay: options.method.learnsMasks ? options.weightDecay : 0)
    }

    var perSample: Int { subject.latentCount }
    var guided: Bool { options.guidance != 1 }

    /// The parameters the optimiser updates, in a fixed order.
    var parameters: [Buffer<Float>] {
        options.method.learnsMasks ? sites.map { logits[$0]! } : trainable.map(\.buffer)
    }

    /// Items the method trains on: ESD has no preservation term, so it draws concept prompts only.
    public var pool: [ErasureItem] { options.method == .esd ? items.filter(\.isConcept) : items }

    /// The items of optimiser step `it` (epoch order; the list is already interleaved concept/neutral).
    public func batch(at it: Int) -> [(item: ErasureItem, epoch: Int)] {
        let p = pool
        return (0..<options.batch).map { j in
            let k = it * options.batch + j
            return (p[k % p.count], k / p.count)
        }
    }

    func noiseSeed(_ item: ErasureItem, epoch: Int) -> UInt64 {
        options.freshNoise ? item.seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15 : item.seed
    }

    // MARK: targets of the original model

    /// The original (unmasked) model's final latents for (prompt, noise seed) pairs, computed once.
    public func originalSamples(_ requests: [(prompt: String, seed: UInt64)], progress: ((Int, Int) -> Void)? = nil) throws -> [[Float]] {
        let unique = missing(requests, in: Set(targetCache.keys))
        if !unique.isEmpty {
            let gen = Generator(model: model, encoder: encoder, space: subject, steps: options.samplingSteps, guidanceScale: options.guidance)
            let out = try gen.latents(prompts: unique.map(\.0), seeds: unique.map(\.1), progress: progress)
            for (r, l) in zip(unique, out) { targetCache[key(r.0, r.1)] = l }
        }
        return requests.map { targetCache[key($0.prompt, $0.seed)]! }
    }

    /// The original model's sampling paths (latent and guided velocity at every step), computed once.
    public func originalTrajectories(_ requests: [(prompt: String, seed: UInt64)], progress: ((Int, Int) -> Void)? = nil) throws -> [Generator.Trajectory] {
        let unique = missing(requests, in: Set(trajectoryCache.keys))
        if !unique.isEmpty {
            let gen = Generator(model: model, encoder: encoder, space: subject, steps: options.samplingSteps, guidanceScale: options.guidance)
            let encs = try unique.map { try encoder.encode($0.0, allowUnknown: true) }
            let out = try gen.trajectories(encodings: encs, seeds: unique.map(\.1), progress: progress)
            for (r, t) in zip(unique, out) { trajectoryCache[key(r.0, r.1)] = t }
        }
        return requests.map { trajectoryCache[key($0.prompt, $0.seed)]! }
    }

    private func missing(_ requests: [(prompt: String, seed: UInt64)], in have: Set<String>) -> [(String, UInt64)] {
        var unique: [(String, UInt64)] = []
        var seen = have
        for r in requests where seen.insert(key(r.prompt, r.seed)).inserted { unique.append((r.prompt, r.seed)) }
        return unique
    }

    private func key(_ p: String, _ s: UInt64) -> String { "\(s)|\(p)" }

    /// What each item is compared with: the target prompt's path (per-step), the concept prompt's own path
    /// (ESD, which builds its target from it), or the target's final sample (end-to-end methods).
    func targetRequests(_ chosen: [(item: ErasureItem, epoch: Int)]) -> [(prompt: String, seed: UInt64)] {
        chosen.map { (options.method == .esd ? $0.item.prompt : $0.item.targetPrompt, noiseSeed($0.item, epoch: $0.epoch)) }
    }

    /// Precomputes every target the run will need (all of them with fixed noise; the first epoch's otherwise).
    public func prepareTargets(progress: ((Int, Int) -> Void)? = nil) throws {
        let reqs = targetRequests(pool.map { ($0, 0) })
        switch options.method {
        case .mask, .finetune: _ = try originalSamples(reqs, progress: progress)
        case .perStep, .esd: _ = try originalTrajectories(reqs, progress: progress)
        }
    }

    // MARK: masks

    /// Multipliers and their derivatives d(multiplier)/d(logit) of every site for optimiser step `it`: a pure
    /// function of seed, step and the site's number in `sites` (transformer sites first, so adding text-encoder
    /// sites leaves the transformer's draws unchanged).
    func sampledMasks(at it: Int, logits: [Site: Buffer<Float>]) -> (masks: [Site: [Float]], derivs: [Site: [Float]]) {
        var masks: [Site: [Float]] = [:], derivs: [Site: [Float]] = [:]
        guard options.method.learnsMasks else { return (masks, derivs) }
        for (si, s) in sites.enumerated() { (masks[s], derivs[s]) = draw(logits[s]!, site: si, iteration: it) }
        return (masks, derivs)
    }

    /// The transformer sites' multipliers as the engine takes them.
    static func maskSet(_ masks: [Site: [Float]]) -> MaskSet<Float> {
        var set = MaskSet<Float>()
        for (s, m) in masks.transformerSites { set[s] = Buffer(m) }
        return set
    }

    /// One relaxed draw per unit of site number `si` at step `it` (a pure function of seed, step and site),
    /// with d(multiplier)/d(logit); in the binary finish, the binarised mask with the straight-through derivative.
    func draw(_ l: Buffer<Float>, site si: Int, iteration it: Int) -> (masks: [Float], derivs: [Float]) {
        if options.isBinaryStep(it) {
            let t = options.finishThreshold ?? 0, logits = l.array
            return (logits.map { Double($0) > t ? 1 : 0 },
                    logits.map { Float(options.relaxation.sample(logit: Double($0) - t, u: 0.5).dLogit) })
        }
        var rng = SplitMix64(seed: options.seed ^ 0x4D41_534B ^ (UInt64(it) &* 0x1_0000_0001) ^ (UInt64(si) &* 0x9E37_79B9_7F4A_7C15))
        var m = [Float](repeating: 0, count: l.count), d = m
        for j in 0..<l.count {
            let (v, dv) = options.relaxation.sample(logit: Double(l[j]), u: rng.uniform())
            m[j] = Float(v); d[j] = Float(dv)
        }
        return (m, d)
    }

    /// Current logits as plain arrays.
    public var logitArrays: [Site: [Float]] { logits.mapValues(\.array) }

    /// Units whose noise-free multiplier is below ½ (what threshold-0 binarisation would drop).
    public var expectedMasked: Int {
        logits.values.reduce(0) { n, l in
            n + l.array.filter { options.relaxation.expected(logit: Double($0)) < 0.5 }.count
        }
    }

    // MARK: optimisation

    /// One optimiser step on the next batch; returns its figures.
    @discardableResult
    public func step(progress: ((Int, Int) -> Void)? = nil) throws -> ErasureStepLog {
        let it = iteration
        let r = try lossAndGradient(at: it, logits: logits, progress: progress)
        optimizer.lr = options.learningRate(at: it)
        optimizer.update(parameters, r.grads)
        if !options.method.learnsMasks { trained.weights.weightsChanged() }   // bf16 packs follow the tuned weights
        iteration += 1
        var log = ErasureStepLog(iteration: iteration, eraseLoss: r.erase, preserveLoss: r.preserve, loss: r.loss,
                                 expectedMasked: expectedMasked)
        log.textPreserveLoss = r.textPreserve
        log.unitCostLoss = r.unitCost
        history.append(log)
        return log
    }

    /// The objective of optimiser step `iteration` and its gradient w.r.t. the logits (mask methods), without
    /// updating anything; `perturb` adds δ to one logit first (for finite-difference checks).
    public func probe(iteration it: Int, perturb: (Site, Int, Float)? = nil) throws -> (loss: Double, grads: [Site: [Float]]) {
        let l = logits.mapValues { $0.copy() }
        if let (s, j, d) = perturb { l[s]![j] += d }
        let r = try lossAndGradient(at: it, logits: l)
        var g: [Site: [Float]] = [:]
        for (s, b) in zip(sites, r.grads) where options.method.learnsMasks { g[s] = b.array }
        return (r.loss, g)
    }

    /// The objective of step `it` with element `element` of parameter `index` (in `parameters` order: a site's
    /// logits, or a trained tensor) moved by `delta`, and the gradient of every parameter; nothing is updated.
    public func probe(iteration it: Int, parameter index: Int, element: Int, delta: Float) throws -> (loss: Double, grads: [[Float]]) {
        if options.method.learnsMasks {
            let l = logits.mapValues { $0.copy() }
            l[sites[index]]![element] += delta
            let r = try lossAndGradient(at: it, logits: l)
            return (r.loss, r.grads.map(\.array))
        }
        let b = trainable[index].buffer, saved = b[element]
        b[element] = saved + delta
        trained.weights.weightsChanged()
        defer { b[element] = saved; trained.weights.weightsChanged() }
        let r = try lossAndGradient(at: it, logits: logits)
        return (r.loss, r.grads.map(\.array))
    }

    /// The objective and its gradient for each of `parameters` (same order).
    struct Evaluation {
        var loss, erase, preserve: Double; var grads: [Buffer<Float>]; var textPreserve: Double? = nil; var unitCost: Double? = nil
    }

    func lossAndGradient(at it: Int, logits: [Site: Buffer<Float>], progress: ((Int, Int) -> Void)? = nil) throws -> Evaluation {
        let r: Evaluation
        switch options.method {
        case .mask, .finetune: r = try endToEnd(at: it, logits: logits, progress: progress)
        case .perStep: r = try perStep(at: it, logits: logits)
        case .esd: r = try esd(at: it)
        }
        guard r.loss.isFinite else { throw ErasureError.badInput("erasure diverged at iteration \(it): loss is \(r.loss)") }
        return r
    }

    /// Per-item weights of the objective: 1/n_c for concept items, β/n_n for neutral ones.
    func itemWeights(_ chosen: [(item: ErasureItem, epoch: Int)]) -> [Double] {
        let nc = chosen.filter { $0.item.isConcept }.count, nn = chosen.count - nc
        return chosen.map { $0.item.isConcept ? 1 / Double(nc) : options.beta / Double(max(nn, 1)) }
    }

    /// Noise x_T of the chosen items, one after the other.
    func startNoise(_ chosen: [(item: ErasureItem, epoch: Int)]) -> Buffer<Float> {
        let per = perSample, start = Buffer<Float>(uninitialized: chosen.count * per)
        for (k, c) in chosen.enumerated() {
            subject.noise(seed: noiseSeed(c.item, epoch: c.epoch)).withUnsafeBufferPointer {
                (start.p + k * per).update(from: $0.baseAddress!, count: per)
            }
        }
        return start
    }

    /// Conditioning for prompts (one row each), followed by as many null-prompt rows when `guided`.
    func conditioning(_ prompts: [String], guided: Bool) throws -> FluxConditioning<Float> {
        var encs = try prompts.map { try encoder.encode($0, allowUnknown: true) }
        if guided { encs += Array(repeating: try encoder.encodeNull(), count: prompts.count) }
        return try encoder.conditioning(encs, config: model.config, imageIds: subject.imageIds)
    }

    /// dL/dλ = dL/dm · dm/dλ per site, in `sites` order (mask methods), or the trained tensors' weight gradients.
    func parameterGradients(_ dm: [Site: [Float]], derivs: [Site: [Float]]) -> [Buffer<Float>] {
        guard options.method.learnsMasks else { return trainableGrads.map { $0.copy() } }
        return sites.map { s in Buffer(zip(dm[s]!, derivs[s]!).map { $0 * $1 }) }
    }

    /// Mean squared error per item between rows of `x` and `targets`, weighted; fills dx.
    func weightedMSE(_ x: Buffer<Float>, targets: [[Float]], weights: [Double], isConcept: [Bool], dx: Buffer<Float>,
                     scale extra: Double = 1) -> (total: Double, erase: Double, preserve: Double) {
        let per = perSample, nc = isConcept.filter { $0 }.count, nn = isConcept.count - nc
        var total = 0.0, erase = 0.0, preserve = 0.0
        for (k, t) in targets.enumerated() {
            var s = 0.0
            let scale = Float(2 * weights[k] * extra / Double(per))
            for j in 0..<per {
                let e = x[k * per + j] - t[j]
                s += Double(e) * Double(e)
                dx[k * per + j] = scale * e
            }
            let mse = s / Double(per)
            if isConcept[k] { erase += mse / Double(nc) } else { preserve += mse / Double(max(nn, 1)) }
            total += weights[k] * extra * mse
        }
        return (total, erase, preserve)
    }

    /// `mask` and `finetune`: the loss on the final samples, backpropagated through all N steps.
    func endToEnd(at it: Int, logits: [Site: Buffer<Float>], progress: ((Int, Int) -> Void)?) throws -> Evaluation {
        let chosen = batch(at: it)
        let targets = try originalSamples(targetRequests(chosen))
        let (drawn, derivs) = sampledMasks(at: it, logits: logits)
        let textMasks = drawn.textLayers
        let text = textLayers.isEmpty ? nil : try maskedConditioning(chosen.map(\.item.prompt), guided: guided, masks: textMasks)
        let cond = try text?.cond ?? conditioning(chosen.map(\.item.prompt), guided: guided)
        let masks = Self.maskSet(drawn)
        let weights = itemWeights(chosen), isConcept = chosen.map(\.item.isConcept)
        var parts = (total: 0.0, erase: 0.0, preserve: 0.0)
        let objective: CheckpointedSampler<Float>.Objective = { x0 in
            let dx = Buffer<Float>(uninitialized: x0.count)
            parts = self.weightedMSE(x0, targets: targets, weights: weights, isConcept: isConcept, dx: dx)
            return (parts.total, dx)
        }
        weightGrads?.zero()
        let sampler = CheckpointedSampler(transformer: trained, cond: cond, schedule: schedule, masks: masks, guidanceScale: options.guidance)
        let result = try sampler.gradient(start: startNoise(chosen), maskGradients: transformerSites.filter { masks[$0] != nil },
                                          weightGradients: false, objective: objective, progress: progress,
                                          weightAccumulator: weightGrads)
        // dL/dm per site: the transformer's from the sampler's backward, the text encoder's through MiniLM.
        var dm: [Site: [Float]] = [:]
        for (s, g) in result.grads.masks { dm[.transformer(s)] = g.array }
        var loss = result.loss, textPreserve: Double?, unitCost: Double?
        if let text {
            var dmText = try textMaskGradients(text, grads: result.grads)
            if options.effectiveTextPreserve > 0 {
                let (l, g) = try textPreservation(masks: textMasks)
                loss += l; textPreserve = l
                for (layer, gl) in g { dmText[layer] = zip(dmText[layer]!, gl).map { $0 + $1 } }
            }
            let kappa = options.effectiveUnitCost
            if kappa > 0 {
                let w = try textUnitCosts()
                var l = 0.0
                for layer in textLayers {
                    let m = textMasks[layer]!, wl = w[layer]!
                    for j in wl.indices {
                        l += kappa * Double(wl[j]) * Double(1 - m[j])
                        dmText[layer]![j] -= Float(kappa) * wl[j]
                    }
                }
                loss += l; unitCost = l
            }
            for (layer, g) in dmText { dm[.textEncoder(layer: layer)] = g }
        }
        return Evaluation(loss: loss, erase: parts.erase, preserve: parts.preserve, grads: parameterGradients(dm, derivs: derivs),
                          textPreserve: textPreserve, unitCost: unitCost)
    }

    /// γ·[mean_k D_k + D_null] over the anchor captions k and the null prompt, and its gradient w.r.t. the
    /// text-encoder multipliers. D is the squared change of the encoder's outputs as the transformer reads them:
    /// D = mean((W_c·Δh)²) + mean((W_p·Δp)²), with Δh the change of the hidden states (each token), Δp that of
    /// the pooled embedding, W_c the context embedder and W_p the pooled embedding's first layer. Measured there
    /// rather than on Δh itself, the term ignores directions the transformer does not read (W_c has rank 256 of
    /// 384) and weighs the ones it does by how strongly it reads them. The null prompt weighs as much as all
    /// captions together: it is the unconditional branch of every guided sample, so a change to it moves every
    /// prompt's image.
    public func textPreservation(masks: [Int: [Float]]) throws -> (loss: Double, grads: [Int: [Float]]) {
        let m = encoder.miniLM, top = model.weights.top
        let (encs, tape) = try m.encode(batch: try anchors().map(\.tokenIds), feedForwardMasks: masks, fill: textFill, keepTape: true)
        let gamma = options.effectiveTextPreserve
        var loss = 0.0, dHidden: [[Float]] = [], dPooled: [[Float]] = []
        for (k, (e, o)) in zip(encs, anchorEncodings).enumerated() {
            let w = gamma * anchorWeight(k)
            let h = Self.readChange(zip(e.hiddenStates, o.hiddenStates).map { $0 - $1 }, through: top.contextEmbedder, weight: w)
            let p = Self.readChange(zip(e.pooled, o.pooled).map { $0 - $1 }, through: top.textLinear1, weight: w)
            dHidden.append(h.grad); dPooled.append(p.grad); loss += h.value + p.value
        }
        return (loss, try m.feedForwardMaskGradients(tape: tape!, dHidden: dHidden, dPooled: dPooled))
    }

    /// The anchors' unmasked encodings, the null prompt last (tokenized and encoded once; later steps reuse their ids).
    func anchors() throws -> [TextEncoding] {
        let m = encoder.miniLM
        if anchorEncodings.isEmpty {
            anchorEncodings = try m.encode(batch: textAnchors.map { try m.tokenIds($0, allowUnknown: true) } + [m.tokenizer.emptyPromptIds])
        }
        return anchorEncodings
    }

    /// Weight of anchor k in the text-preservation measure: 1/K for each of the K captions, 1 for the null prompt (last).
    func anchorWeight(_ k: Int) -> Double { k == textAnchors.count ? 1 : 1 / Double(textAnchors.count) }

    /// w_j of every text-encoder unit (the `--unit-cost` prices): what closing unit j alone changes the anchors'
    /// outputs by, in the text-preservation term's measure (γ = 1) and to first order — Σ_i c_i·J_ij², J the
    /// Jacobian of the read-out changes w.r.t. the multipliers at m = 1 and c_i the term's weights. The diagonal
    /// of JᵀCJ by Hutchinson's estimator: for random signs r over the read-outs, g = Jᵀ(√c ⊙ r) is one backward
    /// pass of the encoder, and E[g_j²] = Σ_i c_i J_ij². Computed once, with a fixed seed.
    public func textUnitCosts(probes: Int = ErasureOptions.unitCostProbes) throws -> [Int: [Float]] {
        if let c = unitCostCache, probes == ErasureOptions.unitCostProbes { return c }
        let m = encoder.miniLM, top = model.weights.top, anchors = try anchors()
        let ones = Dictionary(uniqueKeysWithValues: textLayers.map { ($0, [Float](repeating: 1, count: m.intermediateSize)) })
        let (_, tape) = try m.encode(batch: anchors.map(\.tokenIds), feedForwardMasks: ones, fill: textFill, keepTape: true)
        var rng = SplitMix64(seed: options.seed ^ 0x5052_4943)
        var sum = ones.mapValues { $0.map { _ in 0.0 } }
        for _ in 0..<probes {
            var dHidden: [[Float]] = [], dPooled: [[Float]] = []
            for (k, a) in anchors.enumerated() {
                let w = anchorWeight(k)
                dHidden.append(Self.probeBack(rows: a.count, through: top.contextEmbedder, weight: w, rng: &rng))
                dPooled.append(Self.probeBack(rows: 1, through: top.textLinear1, weight: w, rng: &rng))
            }
            for (l, g) in try m.feedForwardMaskGradients(tape: tape!, dHidden: dHidden, dPooled: dPooled) {
                for j in g.indices { sum[l]![j] += Double(g[j]) * Double(g[j]) }
            }
        }
        let costs = sum.mapValues { $0.map { Float($0 / Double(probes)) } }
        if probes == ErasureOptions.unitCostProbes { unitCostCache = costs }
        return costs
    }

    /// √(w/count)·(r·W) for random signs r over `rows` read-outs of `lin` (count = rows·outDim, as in `readChange`):
    /// a random gradient whose backward pass probes the read-out measure.
    static func probeBack(rows: Int, through lin: LinearWeights<Float>, weight w: Double, rng: inout SplitMix64) -> [Float] {
        let n = lin.inDim, o = lin.outDim, scale = Float((w / Double(rows * o)).squareRoot())
        let r = (0..<(rows * o)).map { _ in rng.uniform() < 0.5 ? -scale : scale }
        var g = [Float](repeating: 0, count: rows * n)
        r.withUnsafeBufferPointer { rp in g.withUnsafeMutableBufferPointer { gp in
            Gemm.run(m: rows, n: n, k: o, a: rp.baseAddress!, lda: o, b: lin.w.p, ldb: n, c: gp.baseAddress!, ldc: n)
        } }
        return g
    }

    /// w·mean((Δ·Wᵀ)²) over the rows of Δ (each `lin.inDim` wide) and its gradient w.r.t. Δ: the change as the
    /// layer that reads it sees it (W: [out, in], row-major as PyTorch stores it).
    static func readChange(_ delta: [Float], through lin: LinearWeights<Float>, weight w: Double) -> (value: Double, grad: [Float]) {
        let n = lin.inDim, o = lin.outDim, rows = delta.count / n
        var y = [Float](repeating: 0, count: rows * o), g = [Float](repeating: 0, count: delta.count)
        delta.withUnsafeBufferPointer { d in y.withUnsafeMutableBufferPointer { yp in
            Gemm.run(transB: true, m: rows, n: o, k: n, a: d.baseAddress!, lda: n, b: lin.w.p, ldb: n, c: yp.baseAddress!, ldc: o)
        } }
        let count = Double(rows * o)
        let value = w * y.reduce(0.0) { $0 + Double($1) * Double($1) } / count
        let scale = Float(2 * w / count)
        y.withUnsafeBufferPointer { yp in g.withUnsafeMutableBufferPointer { gp in
            Gemm.run(m: rows, n: n, k: o, alpha: scale, a: yp.baseAddress!, lda: o, b: lin.w.p, ldb: n, c: gp.baseAddress!, ldc: n)
        } }
        return (value, g)
    }

    /// Conditioning whose text comes from the masked text encoder, with the tape for its backward pass:
    /// one sequence per prompt, plus the null prompt (shared by the unconditional rows) when `guided`.
    struct MaskedText { let cond: FluxConditioning<Float>; let tape: MiniLMTape; let sequenceOfRow: [Int] }

    func maskedConditioning(_ prompts: [String], guided: Bool, masks: [Int: [Float]]) throws -> MaskedText {
        let m = encoder.miniLM
        var ids = try prompts.map { p -> [Int] in
            p.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? m.tokenizer.emptyPromptIds : try m.tokenIds(p, allowUnknown: true)
        }
        var rows = Array(prompts.indices)
        if guided {
            ids.append(m.tokenizer.emptyPromptIds)
            rows += Array(repeating: prompts.count, count: prompts.count)
        }
        let (encs, tape) = try m.encode(batch: ids, feedForwardMasks: masks, fill: textFill, keepTape: true)
        let cond = try encoder.conditioning(rows.map { encs[$0] }, config: model.config, imageIds: subject.imageIds)
        return MaskedText(cond: cond, tape: tape!, sequenceOfRow: rows)
    }

    /// dL/dm of the text-encoder multipliers from the transformer's gradient w.r.t. its text inputs.
    func textMaskGradients(_ text: MaskedText, grads: FluxGradients<Float>) throws -> [Int: [Float]] {
        let D = model.config.jointAttentionDim, lt = text.cond.textTokens, tape = text.tape
        var dHidden = (0..<tape.count).map { [Float](repeating: 0, count: tape.length(of: $0) * D) }
        var dPooled = (0..<tape.count).map { _ in [Float](repeating: 0, count: D) }
        for (row, k) in text.sequenceOfRow.enumerated() {
            let base = row * lt * D
            for j in 0..<dHidden[k].count { dHidden[k][j] += grads.encoderHiddenStates[base + j] }
            for c in 0..<D { dPooled[k][c] += grads.pooledProjections[row * D + c] }
        }
        return try encoder.miniLM.feedForwardMaskGradients(tape: tape, dHidden: dHidden, dPooled: dPooled)
    }

    /// `per-step`: at every step i of the original's path for the target, the masked model's (guided)
    /// velocity for the prompt must equal the original's velocity there; the loss is the mean over steps.
    func perStep(at it: Int, logits: [Site: Buffer<Float>]) throws -> Evaluation {
        let chosen = batch(at: it)
        let paths = try originalTrajectories(targetRequests(chosen))
        let (drawn, derivs) = sampledMasks(at: it, logits: logits)
        let masks = Self.maskSet(drawn)
        let weights = itemWeights(chosen), isConcept = chosen.map(\.item.isConcept)
        let N = options.samplingSteps, B = chosen.count, per = perSample
        var maskGrads = Dictionary(uniqueKeysWithValues: transformerSites.map { ($0, Buffer<Float>.zeros($0.width(model.config))) })
        var total = 0.0, erase = 0.0, preserve = 0.0
        let chunk = 5      // steps per batched call: bounds the taped activations
        for first in stride(from: 0, to: N, by: chunk) {
            let steps = Array(first..<min(N, first + chunk))
            // Rows: item-major, then step.
            var prompts: [String] = [], sigmas: [Double] = [], targets: [[Float]] = [], w: [Double] = [], concept: [Bool] = []
            let x = Buffer<Float>(uninitialized: B * steps.count * per)
            var r = 0
            for (k, c) in chosen.enumerated() {
                for i in steps {
                    paths[k].latents[i].withUnsafeBufferPointer { (x.p + r * per).update(from: $0.baseAddress!, count: per) }
                    prompts.append(c.item.prompt); sigmas.append(schedule.sigmas[i]); targets.append(paths[k].velocities[i])
                    w.append(weights[k]); concept.append(isConcept[k]); r += 1
                }
            }
            let (loss, g) = try guidedValueAndGradient(model: trained, x: x, sigmas: sigmas, prompts: prompts, masks: masks) { v, dv in
                self.weightedMSE(v, targets: targets, weights: w, isConcept: concept, dx: dv, scale: 1 / Double(N))
            }
            total += loss.total; erase += loss.erase * Double(steps.count) / Double(N); preserve += loss.preserve * Double(steps.count) / Double(N)
            for s in transformerSites { if let gs = g.masks[s] { let a = maskGrads[s]!; for j in 0..<a.count { a[j] += gs[j] } } }
        }
        maskGrads = maskGrads.filter { masks[$0.key] != nil }
        let dm = Dictionary(uniqueKeysWithValues: maskGrads.map { (Site.transformer($0.key), $0.value.array) })
        return Evaluation(loss: total, erase: erase, preserve: preserve, grads: parameterGradients(dm, derivs: derivs))
    }

    /// The model's velocity rows at (x_r, σ_r, prompt_r) — guided when the options guide — an objective on
    /// them (filling d/dv), and the backward pass: mask gradients in the result, weight gradients into
    /// `weightGrads` (when the method trains weights).
    func guidedValueAndGradient(
        model m: FluxTransformer<Float>, x: Buffer<Float>, sigmas: [Double], prompts: [String], masks: MaskSet<Float>,
        guided useGuidance: Bool? = nil,
        objective: (_ v: Buffer<Float>, _ dv: Buffer<Float>) -> (total: Double, erase: Double, preserve: Double)
    ) throws -> ((total: Double, erase: Double, preserve: Double), FluxGradients<Float>) {
        let g = useGuidance ?? guided
        let n = x.count
        let cond = try conditioning(prompts, guided: g)
        let input = Buffer<Float>(uninitialized: g ? 2 * n : n)
        if g { Guidance.duplicate(x.p, count: n, into: input.p) } else { input.p.update(from: x.p, count: n) }
        let grads = FluxGradients<Float>(config: m.config, batch: cond.batch, textTokens: cond.textTokens, imageTokens: cond.imageTokens,
                                         maskSites: transformerSites.filter { masks[$0] != nil }, weightGradients: weightGrads)
        var parts = (total: 0.0, erase: 0.0, preserve: 0.0)
        let s = Float(options.guidance)
        _ = try m.valueAndGradient(hidden: input.p, sigma: g ? sigmas + sigmas : sigmas, cond: cond, masks: masks, grads: grads) { v in
            let out = Buffer<Float>(uninitialized: n), dv = Buffer<Float>(uninitialized: n)
            if g { Guidance.combine(v.p, count: n, scale: s, into: out.p) } else { out.p.update(from: v.p, count: n) }
            parts = objective(out, dv)
            guard g else { return (parts.total, dv) }
            let dOut = Buffer<Float>(uninitialized: 2 * n)
            Guidance.backward(dv.p, count: n, scale: s, factor: 1, into: dOut.p)
            return (parts.total, dOut)
        }
        return (parts, grads)
    }

    /// `esd`: for each concept prompt c, a step i of the original's path for c (seeded by iteration and
    /// item), and the target v'(x_i, ∅) − η·(v'(x_i, c) − v'(x_i, ∅)) from the original model; the trained
    /// model's unguided velocity for c must match it.
    func esd(at it: Int) throws -> Evaluation {
        let chosen = batch(at: it)
        let paths = try originalTrajectories(targetRequests(chosen))
        let N = options.samplingSteps, B = chosen.count, per = perSample
        let x = Buffer<Float>(uninitialized: B * per)
        var sigmas: [Double] = []
        for (k, c) in chosen.enumerated() {
            var rng = SplitMix64(seed: options.seed ^ 0x4553_44 ^ UInt64(it) &* 0x9E37_79B9_7F4A_7C15 ^ c.item.seed)
            let i = Int(rng.next() % UInt64(N))
            paths[k].latents[i].withUnsafeBufferPointer { (x.p + k * per).update(from: $0.baseAddress!, count: per) }
            sigmas.append(schedule.sigmas[i])
        }
        // The original's conditional and unconditional velocities at those points.
        let both = Buffer<Float>(uninitialized: 2 * B * per)
        both.p.update(from: x.p, count: B * per)
        (both.p + B * per).update(from: x.p, count: B * per)
        let prompts = chosen.map(\.item.prompt)
        let v = try model.forward(hidden: both.p, sigma: sigmas + sigmas, cond: try conditioning(prompts, guided: true))
        let eta = Float(options.esdEta), n = B * per
        let targets: [[Float]] = (0..<B).map { k in
            (0..<per).map { j in let u = v[n + k * per + j], c = v[k * per + j]; return u - eta * (c - u) }
        }
        weightGrads?.zero()
        let (loss, _) = try guidedValueAndGradient(model: trained, x: x, sigmas: sigmas, prompts: prompts, masks: MaskSet(),
                                                   guided: false) { out, dv in
            self.weightedMSE(out, targets: targets, weights: Array(repeating: 1 / Double(B), count: B),
                             isConcept: Array(repeating: true, count: B), dx: dv)
        }
        return Evaluation(loss: loss.total, erase: loss.erase, preserve: 0, grads: parameterGradients([:], derivs: [:]))
    }

    // MARK: checkpoints

    /// The trained tensors under their state-file names.
    var namedParameters: [(String, Buffer<Float>)] {
        options.method.learnsMasks
            ? sites.map { ("logits.\($0)", logits[$0]!) }
            : trainable.map { ("weights.\($0.name)", $0.buffer) }
    }

    public func saveState(to path: String) throws {
        var w = SafeTensorsWriter(metadata: [
            "options": try metadataJSON(options),
            "iteration": "\(iteration)", "adam_step": "\(optimizer.state.step)",
            "history": try metadataJSON(history),
        ])
        for (name, b) in namedParameters { w.add(name, shape: [b.count], floats: b.array) }
        for (i, m) in optimizer.state.moments.enumerated() { w.add("adam.\(i)", shape: [m.count], floats: m.array) }
        do { try w.write(to: path) } catch { throw ErasureError.io("cannot write \(path): \(error)") }
    }

    public func loadState(from path: String) throws {
        let f: SafeTensorsFile
        do { f = try SafeTensorsFile(path: path) } catch { throw ErasureError.io("cannot read erasure state \(path): \(error)") }
        guard let json = f.metadata["options"], let saved = try? JSONDecoder().decode(ErasureOptions.self, from: Data(json.utf8)) else {
            throw ErasureError.badInput("\(path) is not an mce erase state file of this version (no readable options in its metadata)")
        }
        guard saved == options else {
            throw ErasureError.badInput("\(path) was written with different options; resume with the same arguments or use a new --out folder")
        }
        for (name, b) in namedParameters { try f.decode(name, into: b.buffer) }
        if !options.method.learnsMasks { trained.weights.weightsChanged() }
        if f.contains("adam.0") {
            let params = parameters
            let moments = (params + params).map { Buffer<Float>.zeros($0.count) }
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
}
