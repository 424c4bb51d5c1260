import BLAS
import Erasure
import Flux
import Foundation
import Imaging
import Pipeline
import TextEncoder

/// An erased model to evaluate: the base model with binary masks, or a baked checkpoint.
public struct ErasedModel {
    public var name: String
    public var source: String
    public var model: FluxTransformer<Float>?       // nil: the base model with `masks`
    public var masks: MaskSet<Float>
    public var maskFile: MaskFile?
    /// The erased model's own text encoder (masks on it); nil: the base model's.
    public var encoder: PromptEncoder?
    /// Cost figures of the erase run, when known.
    public var eraseSeconds: Double?
    public var peakRSSMiB: Double?

    public init(name: String, source: String, model: FluxTransformer<Float>? = nil, masks: MaskSet<Float> = MaskSet(),
                maskFile: MaskFile? = nil, encoder: PromptEncoder? = nil, eraseSeconds: Double? = nil, peakRSSMiB: Double? = nil) {
        self.name = name; self.source = source; self.model = model; self.masks = masks; self.maskFile = maskFile
        self.encoder = encoder
        self.eraseSeconds = eraseSeconds; self.peakRSSMiB = peakRSSMiB
    }
}

/// Samples of one prompt set: the original model's and each erased model's, same prompts and seeds.
public struct SampleSet {
    public let name: String
    public let prompts: [EvaluationPrompt]
    public let original: [RGBImage]
    public let erased: [[RGBImage]]          // one array per erased model
}

public enum Evaluator {
    /// Generates every set with the original and each erased model and measures it. `extraConceptSets`
    /// (e.g. the prompts an erase run trained on, with their seeds) are measured like the concept sets.
    /// `sampleBatch` prompts share a model call: the samples do not depend on it beyond float rounding (the
    /// matrix products' summation order changes with their row count), so a sample drawn alone (`mce generate`)
    /// equals the evaluation's bit for bit at `sampleBatch` 1.
    public static func run(
        subject: EvaluationSubject, baseName: String, erased: [ErasedModel], concepts: [ConceptSpec],
        judge: ImageJudge, protocol p: EvaluationProtocol,
        extraConceptSets: [(name: String, prompts: [EvaluationPrompt])] = [],
        sampleBatch: Int = 32, progress: ((String, Int, Int) -> Void)? = nil
    ) throws -> (report: EvaluationReport, samples: [SampleSet]) {
        let base = subject.transformer, encoder = subject.encoder
        let classes = concepts.compactMap(\.classID)
        guard !classes.isEmpty else {
            throw ErasureError.badInput("the judge knows the subject's \(subject.classNames.count) classes only; \(concepts.map(\.name)) is none of them")
        }
        // The pinned concept sets first (the targets read the first), then the caller's, then neutral.
        var sets = subject.conceptSets(classes: classes, protocol: p) + extraConceptSets.filter { !$0.prompts.isEmpty }
        sets.append(("neutral", subject.neutralPrompts(excluding: classes, protocol: p)))
        let all = sets.flatMap(\.prompts)
        let total = all.count * p.samplingSteps * (1 + erased.count)
        var done = 0
        func generate(_ model: FluxTransformer<Float>, _ masks: MaskSet<Float>, _ label: String, _ textEncoder: PromptEncoder? = nil) throws -> [RGBImage] {
            let gen = Generator(model: model, encoder: textEncoder ?? encoder, space: subject, steps: p.samplingSteps, guidanceScale: p.guidance)
            gen.maxBatch = sampleBatch
            let imgs = try gen.latents(prompts: all.map(\.text), seeds: all.map(\.seed), masks: masks) { d, _ in
                progress?(label, done + d, total)
            }.map(subject.image(fromLatent:))
            done += all.count * p.samplingSteps
            return imgs
        }
        let original = try generate(base, MaskSet(), "original")
        let outputs = try erased.map { try generate($0.model ?? base, $0.masks, $0.name, $0.encoder) }
        var samples: [SampleSet] = []
        var offset = 0
        for s in sets {
            let r = offset..<(offset + s.prompts.count)
            samples.append(SampleSet(name: s.name, prompts: s.prompts, original: Array(original[r]),
                                     erased: outputs.map { Array($0[r]) }))
            offset += s.prompts.count
        }
        let report = try measure(samples: samples, erased: erased, concepts: concepts, baseName: baseName,
                                 subject: subject, judge: judge, protocol: p)
        return (report, samples)
    }

    /// Prompts of the pinned sets (four concept sets and the neutral set) for these concepts.
    public static func promptCount(concepts: [ConceptSpec], classCount: Int, protocol p: EvaluationProtocol) -> Int {
        4 * p.samples + (classCount - Set(concepts.compactMap(\.classID)).count) * p.perClass
    }

    /// Samples `run` generates (for progress bars sized before it starts): every prompt (pinned sets plus `extraPrompts`) with the original and each erased model.
    public static func sampleCount(concepts: [ConceptSpec], classCount: Int, erasedModels: Int, extraPrompts: Int = 0,
                                   protocol p: EvaluationProtocol) -> Int {
        (promptCount(concepts: concepts, classCount: classCount, protocol: p) + extraPrompts) * (1 + erasedModels)
    }

    /// The report from samples (no generation): what the tests drive with known images.
    public static func measure(
        samples: [SampleSet], erased: [ErasedModel], concepts: [ConceptSpec], baseName: String,
        subject: EvaluationSubject, judge: ImageJudge, protocol p: EvaluationProtocol
    ) throws -> EvaluationReport {
        let encoder = subject.encoder
        let classes = Set(concepts.compactMap(\.classID))
        guard let neutral = samples.first(where: { $0.name == "neutral" }) else { throw ErasureError.badInput("no neutral set") }
        let conceptSets = samples.filter { $0.name != "neutral" }
        let neutralClasses = Set(neutral.prompts.map(\.classID))

        let real = try subject.realImages(classes: neutralClasses, protocol: p)
        let realPreds = judge.judge(real.map(\.image))
        let realAccuracy = Metrics.fraction(zip(realPreds, real).map { $0.classID == $1.classID })
        let realFeatures = judge.features(real.map(\.image))

        // Returns the metrics, the neutral samples' features and which neutral samples show the class asked for.
        func metrics(_ pick: (SampleSet) -> [RGBImage]) -> (EvaluationReport.ModelMetrics, [[Float]], [Bool]) {
            var setMetrics: [EvaluationReport.SetMetrics] = []
            var pooled: [(Judgement, EvaluationPrompt)] = []
            for s in conceptSets {
                let preds = judge.judge(pick(s))
                let acc = Metrics.accuracies(preds, s.prompts)
                let detected = zip(preds, s.prompts).filter { classes.contains($0.0.classID) }.map { EvaluationReport.PromptRef(text: $0.1.text, seed: $0.1.seed) }
                setMetrics.append(.init(name: s.name, prompts: s.prompts.count, detectionRate: Metrics.detectionRate(preds, classes: classes),
                                        objColorAccuracy: acc.objColor, bgColorAccuracy: acc.bgColor, detected: detected))
                pooled += zip(preds, s.prompts)
            }
            let imgs = pick(neutral)
            let preds = judge.judge(imgs), feats = judge.features(imgs)
            let acc = Metrics.accuracies(preds, neutral.prompts)
            let perClass = Metrics.perClassAccuracy(preds, neutral.prompts)
            let pooledColours = Metrics.accuracies(pooled.map(\.0), pooled.map(\.1))
            return (.init(conceptSets: setMetrics,
                          neutral: .init(prompts: neutral.prompts.count, objectAccuracy: acc.object, objColorAccuracy: acc.objColor,
                                         bgColorAccuracy: acc.bgColor, fidToReal: Metrics.fid(feats, realFeatures)),
                          perClass: Dictionary(uniqueKeysWithValues: perClass.map { (subject.classNames[$0.key], $0.value) }),
                          conceptObjColorAccuracy: pooledColours.objColor, conceptBgColorAccuracy: pooledColours.bgColor),
                    feats, zip(preds, neutral.prompts).map { $0.classID == $1.classID })
        }
        let (originalMetrics, originalFeatures, originalCorrect) = metrics { $0.original }

        // Semantic nearness of every neutral class to the erased concepts (MiniLM, class names).
        let conceptEnc = try concepts.map { try encoder.encode($0.name, allowUnknown: true) }
        var similarity: [Int: Double] = [:]
        for c in neutralClasses {
            let e = try encoder.encode(subject.classNames[c], allowUnknown: true)
            similarity[c] = conceptEnc.map { $0.cosine(to: e) }.max() ?? 0
        }

        var runs: [EvaluationReport.RunResult] = []
        for (k, run) in erased.enumerated() {
            let (m, feats, correct) = metrics { $0.erased[k] }
            let change = Metrics.pairedChange(before: originalCorrect, after: correct)
            let conceptBefore = conceptSets.flatMap(\.original), conceptAfter = conceptSets.flatMap { $0.erased[k] }
            let comparison = EvaluationReport.Comparison(
                neutralSSIM: Metrics.meanSSIM(neutral.original, neutral.erased[k]),
                neutralFeatureDistance: Metrics.featureDistance(originalFeatures, feats),
                neutralFIDToOriginal: Metrics.fid(feats, originalFeatures),
                conceptSSIM: Metrics.meanSSIM(conceptBefore, conceptAfter),
                neutralAccuracyChange: .init(change: change.change, lower: change.lower, upper: change.upper))
            let ripple = neutralClasses.sorted { (similarity[$0]!, -$0) > (similarity[$1]!, -$1) }.map { c -> EvaluationReport.RippleRow in
                let name = subject.classNames[c]
                return .init(classID: c, name: name, similarity: similarity[c]!, before: originalMetrics.perClass[name] ?? 0,
                             after: m.perClass[name] ?? 0)
            }
            var cost: EvaluationReport.Cost?
            if let f = run.maskFile {
                let counts = f.allMaskedCounts     // transformer and text-encoder sites alike
                cost = .init(maskedUnits: counts.map(\.masked).reduce(0, +), totalUnits: counts.map(\.total).reduce(0, +),
                             maskedPerSite: Dictionary(uniqueKeysWithValues: counts.map { ($0.site, $0.masked) }),
                             eraseSeconds: run.eraseSeconds, peakRSSMiB: run.peakRSSMiB)
            } else if run.eraseSeconds != nil {     // a weight method's model: nothing masked, the run's cost known
                cost = .init(maskedUnits: 0, totalUnits: 0, maskedPerSite: [:], eraseSeconds: run.eraseSeconds, peakRSSMiB: run.peakRSSMiB)
            }
            let meta = run.maskFile?.metadata ?? [:]
            runs.append(.init(name: run.name, source: run.source, beta: meta["beta"].flatMap(Double.init), target: meta["target"],
                              metrics: m, comparison: comparison, ripple: ripple, cost: cost,
                              targets: EvaluationReport.RunResult.targets(original: originalMetrics, erased: m, comparison: comparison,
                                                                         thresholds: p.thresholds)))
        }
        return EvaluationReport(evaluationProtocol: p, concepts: concepts.map(\.name), baseModel: baseName,
                                realObjectAccuracy: realAccuracy, original: originalMetrics, runs: runs)
    }
}

extension EvaluationSubject {
    /// `gen`'s samples of prompts[i] with seeds[i], as images.
    public func images(_ gen: Generator, prompts: [String], seeds: [UInt64], masks: MaskSet<Float> = MaskSet()) throws -> [RGBImage] {
        try gen.latents(prompts: prompts, seeds: seeds, masks: masks).map(image(fromLatent:))
    }

    /// `gen`'s samples of already-encoded text with seeds[i], as images.
    public func images(_ gen: Generator, encodings: [TextEncoding], seeds: [UInt64], masks: MaskSet<Float> = MaskSet()) throws -> [RGBImage] {
        try gen.latents(encodings: encodings, seeds: seeds, masks: masks).map(image(fromLatent:))
    }
}
