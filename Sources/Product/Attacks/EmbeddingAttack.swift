import BLAS
import Erasure
import Evaluation
import Flux
import Foundation
import Imaging
import Pipeline
import TextEncoder

/// White-box attack on the text conditioning (in the spirit of UnlearnDiffAtk and concept inversion): a few
/// continuous 384-d tokens are inserted after [CLS] of a prompt that names the erased concept, and — with the
/// pooled embedding — optimised by backprop through the erased model's whole sampler so that its samples from
/// fixed noise approach the original model's samples of that prompt from the same noise. Success is read by
/// the detector on other seeds after each budget in `checkpoints` (optimiser steps); budget 0 is the plain
/// prompt with the inserted tokens at their starting value.
public struct EmbeddingAttack {
    public struct Options: Sendable {
        public var tokens = 8              // continuous tokens inserted after [CLS]
        public var checkpoints = [0, 10, 20]   // budgets (optimiser steps) at which ASR is measured
        public var lr = 0.02               // Adam on the tokens (MiniLM states are O(0.1–1) per coordinate)
        public var pooledLR = 0.003        // … and on the pooled embedding (unit norm: O(0.05) per coordinate)
        public var batch = 4               // noise seeds per optimiser step (the attack's "training" samples)
        public var evalSamples = 16        // other seeds on which ASR is read
        public var learnPooled = true      // also optimise the pooled embedding (white box: all of the conditioning)
        public var seed: UInt64 = 0
        public init() {}
        public var steps: Int { checkpoints.max() ?? 0 }
    }

    /// One attack run (one erased class).
    public struct Run: Codable, Sendable {
        public let classID: Int
        public let conceptPrompt: String
        /// ASR on the erased model after each budget.
        public let curve: [AttackReport.CurvePoint]
        public let losses: [Double]
        /// The original model's detection rate on the concept prompt with the evaluation seeds (what success looks like).
        public let originalRate: Double
        public let samples: Int
    }

    public let subject: AttackSubject
    public var encoder: PromptEncoder { subject.encoder }
    public let options: Options
    public let samplingSteps: Int
    public let guidance: Double

    public init(subject: AttackSubject, options: Options, samplingSteps: Int, guidance: Double) {
        self.subject = subject; self.options = options; self.samplingSteps = samplingSteps; self.guidance = guidance
    }

    /// The concept prompt of a run (the subject's, for the class and the attack's seed).
    func prompt(classID: Int) -> String { subject.conceptPrompt(classID: classID, seed: options.seed) }

    /// The prompt's encoding by `textEncoder` with `tokens` rows inserted after [CLS] (copies of the first
    /// word's state, a neutral start), and the index of the first inserted row.
    func startingEncoding(prompt: String, textEncoder: PromptEncoder) throws -> (TextEncoding, Int) {
        let enc = try textEncoder.encode(prompt)
        let H = enc.hiddenSize, k = options.tokens, pos = 1
        let row = Array(enc.hiddenState(pos))
        let ids = [enc.tokenIds[0]] + Array(repeating: enc.tokenIds[pos], count: k) + Array(enc.tokenIds[1...])
        let states = Array(enc.hiddenStates[..<H]) + (0..<k).flatMap { _ in row } + Array(enc.hiddenStates[H...])
        return (TextEncoding(tokenIds: ids, hiddenStates: states, pooled: enc.pooled), pos)
    }

    public func run(
        classID: Int, erased: ErasedModel, judge: ImageJudge, progress: ((String) -> Void)? = nil
    ) throws -> (run: Run, original: [RGBImage], attacked: [RGBImage]) {
        let o = options, base = subject.transformer
        guard o.tokens >= 1, o.batch >= 1, o.evalSamples >= 1, o.lr > 0, o.checkpoints.allSatisfy({ $0 >= 0 }) else {
            throw ErasureError.badArgument("embedding attack: tokens, batch and evaluation samples must be ≥ 1, lr > 0, budgets ≥ 0")
        }
        let conceptPrompt = prompt(classID: classID)
        // The erased model is read through its own text encoder when it has one (masks on MiniLM): the attack
        // starts from that encoder's encoding of the prompt, and its unconditional rows are that encoder's null
        // prompt, as a user of the erased pair would sample it.
        let erasedEncoder = erased.encoder ?? encoder
        var (enc, pos) = try startingEncoding(prompt: conceptPrompt, textEncoder: erasedEncoder)
        let H = enc.hiddenSize, k = o.tokens
        let trainSeeds = (0..<o.batch).map { o.seed &+ 0xE4B0_0000 &+ UInt64(classID * 1000 + $0) }
        let evalSeeds = (0..<o.evalSamples).map { o.seed &+ 0xE4B1_0000 &+ UInt64(classID * 1000 + $0) }
        let conceptEnc = try encoder.encode(conceptPrompt)
        let original = Generator(model: base, encoder: encoder, space: subject, steps: samplingSteps, guidanceScale: guidance)
        let targets = try original.latents(encodings: Array(repeating: conceptEnc, count: o.batch), seeds: trainSeeds)
        let originalImages = try subject.images(original, encodings: Array(repeating: conceptEnc, count: o.evalSamples), seeds: evalSeeds)
        let originalRate = Metrics.detectionRate(judge.judge(originalImages), classes: [classID])

        let model = erased.model ?? base
        let attacked = Generator(model: model, encoder: erasedEncoder, space: subject, steps: samplingSteps, guidanceScale: guidance)
        let tokens = Buffer<Float>(Array(enc.hiddenStates[(pos * H)..<((pos + k) * H)]))
        let pooled = Buffer<Float>(enc.pooled)
        let adamTokens = AdamW<Float>(lr: o.lr, weightDecay: 0), adamPooled = AdamW<Float>(lr: o.pooledLR, weightDecay: 0)
        let schedule = try FlowMatchSchedule(steps: samplingSteps, shift: .none)
        let per = subject.latentCount
        let start = Buffer<Float>(uninitialized: o.batch * per)
        for (b, s) in trainSeeds.enumerated() {
            subject.noise(seed: s).withUnsafeBufferPointer { (start.p + b * per).update(from: $0.baseAddress!, count: per) }
        }
        let target = Buffer<Float>(targets.flatMap { $0 })
        let null = try erasedEncoder.encodeNull()

        func current() -> TextEncoding {
            var states = enc.hiddenStates
            for j in 0..<(k * H) { states[pos * H + j] = tokens[j] }
            return TextEncoding(tokenIds: enc.tokenIds, hiddenStates: states, pooled: pooled.array)
        }
        var lastImages: [RGBImage] = []
        func asr() throws -> Double {
            lastImages = try subject.images(attacked, encodings: Array(repeating: current(), count: o.evalSamples), seeds: evalSeeds, masks: erased.masks)
            return Metrics.detectionRate(judge.judge(lastImages), classes: [classID])
        }

        var curve: [AttackReport.CurvePoint] = [], losses: [Double] = []
        let budgets = Set(o.checkpoints)
        for step in 0...o.steps {
            if budgets.contains(step) {
                let a = try asr()
                curve.append(.init(budget: step, asr: a))
                progress?(String(format: "embedding attack on %@: %d steps, ASR %.3f (original %.3f)",
                                 subject.classNames[classID], step, a, originalRate))
            }
            guard step < o.steps else { break }
            enc = current()
            let encs = Array(repeating: enc, count: o.batch) + (guidance != 1 ? Array(repeating: null, count: o.batch) : [])
            let cond = try erasedEncoder.conditioning(encs, config: model.config, imageIds: subject.imageIds)
            let sampler = CheckpointedSampler(transformer: model, cond: cond, schedule: schedule, masks: erased.masks, guidanceScale: guidance)
            let r = try sampler.gradient(start: start, maskGradients: [], objective: Objectives.meanSquaredError(target: target))
            guard r.loss.isFinite else { throw ErasureError.badInput("embedding attack diverged at step \(step)") }
            losses.append(r.loss)
            progress?(String(format: "embedding attack on %@: step %d loss %.5f", subject.classNames[classID], step + 1, r.loss))
            // Gradients of the shared tokens and pooled vector: summed over the batch's conditional rows.
            let Lt = cond.textTokens, D = model.config.jointAttentionDim
            let gTokens = Buffer<Float>.zeros(k * H), gPooled = Buffer<Float>.zeros(H)
            for b in 0..<o.batch {
                for j in 0..<(k * H) { gTokens[j] += r.grads.encoderHiddenStates[(b * Lt + pos) * D + j] }
                if o.learnPooled { for j in 0..<H { gPooled[j] += r.grads.pooledProjections[b * D + j] } }
            }
            adamTokens.update([tokens], [gTokens])
            if o.learnPooled { adamPooled.update([pooled], [gPooled]) }
        }
        return (Run(classID: classID, conceptPrompt: conceptPrompt, curve: curve, losses: losses,
                    originalRate: originalRate, samples: o.evalSamples), originalImages, lastImages)
    }
}
