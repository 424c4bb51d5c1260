import BLAS
import Erasure
import Evaluation
import Flux
import Foundation
import Pipeline

/// Relearning attack: fine-tune the erased model on k real images of the concept (real scenes from the
/// train split with training captions; rectified-flow loss, every weight trainable) and measure after how
/// many steps the detector sees the concept again. Variants: the masked units kept at zero (the masks stay
/// applied while training and sampling), and free (the masks folded into the weights, which may then regrow).
/// The control is the same fine-tuning of the original model, which shows how fine-tuning on k images alone
/// moves the detection rate.
public struct RelearningAttack {
    public struct Options: Sendable {
        public var images = 8               // k
        public var checkpoints = [0, 20, 50]   // fine-tuning steps at which the detection rate is read
        public var control = true           // also fine-tune the original (the same for every erased model: once is enough)
        public var lr = 1e-4
        public var evalSamples = 16
        public var seed: UInt64 = 0
        public init() {}
        public var steps: Int { checkpoints.max() ?? 0 }
    }

    public struct Curve: Codable, Sendable {
        public let variant: String
        public let points: [AttackReport.CurvePoint]
        /// First budget whose detection rate reaches half the original model's before fine-tuning; nil if none.
        public let stepsToRecover: Int?
    }

    public let subject: AttackSubject
    public var encoder: PromptEncoder { subject.encoder }
    public let options: Options
    public let samplingSteps: Int
    public let guidance: Double

    public init(subject: AttackSubject, options: Options, samplingSteps: Int, guidance: Double) {
        self.subject = subject; self.options = options; self.samplingSteps = samplingSteps; self.guidance = guidance
    }

    /// The k training images (the subject's real images of `classes`, with captions) as packed latents.
    public func trainingImages(classes: Set<Int>) throws -> [(latent: [Float], caption: String)] {
        try subject.trainingImages(classes: classes, count: options.images, seed: options.seed ^ 0x5245_4C45)
    }

    /// Concept prompts (training templates) the detection rate is read on.
    func evaluationPrompts(classes: [Int]) -> [EvaluationPrompt] {
        var p = EvaluationProtocol()
        p.samples = options.evalSamples; p.seed = options.seed ^ 0x524C
        return subject.conceptSets(classes: classes, protocol: p)[0].prompts
    }

    /// Runs the variants that apply to `erased` (kept needs its masks) and the control.
    public func run(
        erased: ErasedModel, classes: [Int], judge: ImageJudge, progress: ((String) -> Void)? = nil
    ) throws -> (curves: [Curve], originalRate: Double) {
        let base = subject.transformer
        guard options.images >= 1, options.evalSamples >= 1, options.lr > 0, options.checkpoints.allSatisfy({ $0 >= 0 }) else {
            throw ErasureError.badArgument("relearning attack: images and evaluation samples must be ≥ 1, lr > 0, budgets ≥ 0")
        }
        let scenes = try trainingImages(classes: Set(classes))
        guard !scenes.isEmpty else { throw ErasureError.badInput("relearning attack: no training scenes of \(classes)") }
        let prompts = evaluationPrompts(classes: classes)
        let reference = Generator(model: base, encoder: encoder, space: subject, steps: samplingSteps, guidanceScale: guidance)
        let originalRate = Metrics.detectionRate(judge.judge(try subject.images(reference, prompts: prompts.map(\.text), seeds: prompts.map(\.seed))),
                                                 classes: Set(classes))
        // The erased model's transformer is fine-tuned behind its own text encoder (an erased one, when it has one).
        let erasedEncoder = erased.encoder ?? encoder
        var variants: [(String, FluxWeights<Float>, MaskSet<Float>, PromptEncoder)] = []
        let start = try (erased.model ?? base).weights.residentCopy()
        if !erased.masks.isEmpty {
            variants.append(("masked units kept at zero", try start.residentCopy(), erased.masks, erasedEncoder))
            try MaskFolding.fold(erased.masks, into: start)
        }
        variants.append(("free", start, MaskSet(), erasedEncoder))
        if options.control { variants.append(("original (control)", try base.weights.residentCopy(), MaskSet(), encoder)) }
        var curves: [Curve] = []
        for (name, weights, masks, textEncoder) in variants {
            let points = try fineTune(weights: weights, masks: masks, encoder: textEncoder, scenes: scenes, prompts: prompts,
                                      classes: Set(classes), judge: judge) { step, rate in
                progress?(String(format: "relearning (%@): %d steps, detection rate %.3f", name, step, rate))
            }
            let recovered = points.first { $0.asr >= 0.5 * originalRate && originalRate > 0 }?.budget
            curves.append(Curve(variant: name, points: points, stepsToRecover: recovered))
        }
        return (curves, originalRate)
    }

    /// Rectified-flow fine-tuning of every weight on the scenes (one batch of all k per step), the masks
    /// applied throughout; the detection rate on `prompts` after each checkpoint budget.
    func fineTune(
        weights: FluxWeights<Float>, masks: MaskSet<Float>, encoder: PromptEncoder, scenes: [(latent: [Float], caption: String)],
        prompts: [EvaluationPrompt], classes: Set<Int>, judge: ImageJudge, report: (Int, Double) -> Void
    ) throws -> [AttackReport.CurvePoint] {
        let model = FluxTransformer(weights: weights)
        let B = scenes.count, per = subject.latentCount
        let x0 = Buffer<Float>(uninitialized: B * per)
        for (k, s) in scenes.enumerated() {
            s.latent.withUnsafeBufferPointer { (x0.p + k * per).update(from: $0.baseAddress!, count: per) }
        }
        let cond = try encoder.conditioning(try encoder.encode(scenes.map(\.caption)), config: model.config,
                                            imageIds: subject.imageIds)
        let grads = FluxWeights<Float>.zeros(config: model.config)
        let adam = AdamW<Float>(lr: options.lr, weightDecay: 0)
        let gen = Generator(model: model, encoder: encoder, space: subject, steps: samplingSteps, guidanceScale: guidance)
        var points: [AttackReport.CurvePoint] = []
        let budgets = Set(options.checkpoints)
        for step in 0...options.steps {
            if budgets.contains(step) {
                let imgs = try subject.images(gen, prompts: prompts.map(\.text), seeds: prompts.map(\.seed), masks: masks)
                let rate = Metrics.detectionRate(judge.judge(imgs), classes: classes)
                points.append(.init(budget: step, asr: rate))
                report(step, rate)
            }
            guard step < options.steps else { break }
            var rng = SplitMix64(seed: options.seed ^ 0x464E_5455 ^ UInt64(step) &* 0x9E37_79B9_7F4A_7C15)
            var sigmas: [Double] = []
            let xt = Buffer<Float>(uninitialized: B * per), target = Buffer<Float>(uninitialized: B * per)
            for k in 0..<B {
                let s = 1 / (1 + Foundation.exp(-rng.normal()))   // logit-normal σ, as the base model's training
                sigmas.append(s)
                for j in (k * per)..<((k + 1) * per) {
                    let n = Float(rng.normal())
                    xt[j] = (1 - Float(s)) * x0[j] + Float(s) * n
                    target[j] = n - x0[j]
                }
            }
            grads.zero()
            let g = FluxGradients<Float>(config: model.config, batch: B, textTokens: cond.textTokens, imageTokens: cond.imageTokens,
                                         maskSites: [], weightGradients: grads)
            let mse = Objectives.meanSquaredError(target: target)
            let loss = try model.valueAndGradient(hidden: xt.p, sigma: sigmas, cond: cond, masks: masks, grads: g) { v in
                let (l, d) = try mse(v)
                return (l, d)
            }
            guard loss.isFinite else { throw ErasureError.badInput("relearning diverged at step \(step)") }
            adam.update(weights.allBuffers, grads.allBuffers)
            weights.weightsChanged()
        }
        return points
    }
}
