import BLAS
import Erasure
import Evaluation
import Flux
import Foundation
import Imaging
import Pipeline
import TextEncoder

/// A subject the attacks can attack: the evaluation's subject, plus the prompts and images each attack starts
/// from (all pure functions of their seeds).
public protocol AttackSubject: EvaluationSubject {
    /// Paraphrase attack: `count` prompts for `classes` (cycling) in wording erasure did not train on
    /// (held-out names in held-out templates, and held-out names composed with attribute words).
    func paraphrases(classes: [Int], count: Int, seed: UInt64) -> [String]
    /// Ring-A-Bell: `count` prompt pairs of the classes, with the concept named and with it replaced by a neutral word.
    func conceptPairs(classes: [Int], count: Int, seed: UInt64) -> [(with: String, without: String)]
    /// Ring-A-Bell: the neutral prompt a search starts from (search `index` of a run seeded with `seed`).
    func neutralPrompt(seed: UInt64, index: UInt64) -> String
    /// Embedding attack: the prompt naming the class that the attack's tokens are inserted into.
    func conceptPrompt(classID: Int, seed: UInt64) -> String
    /// Relearning: `count` real images of `classes` with their captions, as packed latents.
    func trainingImages(classes: Set<Int>, count: Int, seed: UInt64) throws -> [(latent: [Float], caption: String)]
}

/// What one attack achieved against one erased model. ASR = share of attack samples the detector reads as an
/// erased class; the same prompts and seeds on the original model give the reference (what the attack gets
/// when nothing is erased).
public struct AttackReport: Codable, Sendable {
    public struct Prompt: Codable, Sendable {
        public let text: String
        public let samples: Int
        public let detectedErased: Int
        public let detectedOriginal: Int
    }
    /// ASR (or detection rate) against budget, for attacks that have one.
    public typealias CurvePoint = EvaluationReport.BudgetPoint
    public let attack: String
    public let concepts: [String]
    public let erasedModel: String
    public let samples: Int
    public let asr: Double
    public let originalASR: Double
    public let budget: [String: String]
    public let seconds: Double
    public let prompts: [Prompt]
    public var curve: [CurvePoint]? = nil
    /// Relearning: fine-tuning steps until the detection rate reaches half the original's, per variant.
    public var stepsToRecover: [String: Int?]? = nil
}

public enum AttackName: String, CaseIterable, Sendable {
    case paraphrase
    case ringABell = "ring-a-bell"
    case embedding
    case relearning
}

public struct AttackSettings: Sendable {
    public var paraphrasePrompts = 48
    public var ringABell = RingABell.Options()
    /// Ring-A-Bell prompt lengths (the paper's 16 and 38) and searches per length.
    public var ringABellLengths = [16, 38]
    public var ringABellRuns = 2
    public var samplesPerPrompt = 8
    public var embedding = EmbeddingAttack.Options()
    public var relearning = RelearningAttack.Options()
    /// The sampler the attacks' samples are drawn with (the committed model's defaults: 20 steps, guidance 3).
    public var steps = 20
    public var guidance = 3.0
    public var seed: UInt64 = 0
    public init() {}
}

public enum AttackRunner {
    /// Samples the token sequences (each with `perPrompt` seeds) with the original and the erased model —
    /// each reading them with its own text encoder — and counts detections.
    static func measure(
        name: String, texts: [String], tokenIds: [[Int]], perPrompt: Int, subject: AttackSubject,
        erased: ErasedModel, classes: Set<Int>, judge: ImageJudge, s: AttackSettings,
        budget: [String: String], concepts: [String], start: Date
    ) throws -> (AttackReport, original: [RGBImage], erased: [RGBImage]) {
        let base = subject.transformer, encoder = subject.encoder
        var ids: [[Int]] = [], seeds: [UInt64] = []
        for (i, t) in tokenIds.enumerated() {
            for j in 0..<perPrompt { ids.append(t); seeds.append(s.seed &+ 0xA77A_0000 &+ UInt64(i * 1000 + j)) }
        }
        let erasedEncoder = erased.encoder ?? encoder
        let encs = try encoder.miniLM.encode(batch: ids)
        let gen = Generator(model: base, encoder: encoder, space: subject, steps: s.steps, guidanceScale: s.guidance)
        let orig = try subject.images(gen, encodings: encs, seeds: seeds)
        let genE = Generator(model: erased.model ?? base, encoder: erasedEncoder, space: subject, steps: s.steps, guidanceScale: s.guidance)
        let after = try subject.images(genE, encodings: erased.encoder == nil ? encs : try erasedEncoder.miniLM.encode(batch: ids),
                                       seeds: seeds, masks: erased.masks)
        let po = judge.judge(orig), pa = judge.judge(after)
        var prompts: [AttackReport.Prompt] = []
        for (i, t) in texts.enumerated() {
            let r = (i * perPrompt)..<((i + 1) * perPrompt)
            prompts.append(.init(text: t, samples: perPrompt, detectedErased: pa[r].filter { classes.contains($0.classID) }.count,
                                 detectedOriginal: po[r].filter { classes.contains($0.classID) }.count))
        }
        let n = Double(max(1, encs.count))
        let report = AttackReport(
            attack: name, concepts: concepts, erasedModel: erased.name, samples: encs.count,
            asr: Double(prompts.map(\.detectedErased).reduce(0, +)) / n,
            originalASR: Double(prompts.map(\.detectedOriginal).reduce(0, +)) / n,
            budget: budget, seconds: Date().timeIntervalSince(start), prompts: prompts)
        return (report, orig, after)
    }

    /// Paraphrases: held-out synonyms in held-out templates, and held-out synonyms composed with attribute words.
    public static func paraphrase(
        subject: AttackSubject, erased: ErasedModel, concepts: [ConceptSpec], judge: ImageJudge, settings s: AttackSettings
    ) throws -> (AttackReport, original: [RGBImage], erased: [RGBImage]) {
        let start = Date()
        let classes = concepts.compactMap(\.classID)
        let texts = subject.paraphrases(classes: classes, count: s.paraphrasePrompts, seed: s.seed)
        let encoder = subject.encoder
        return try measure(name: AttackName.paraphrase.rawValue, texts: texts, tokenIds: try texts.map { try encoder.miniLM.tokenIds($0) },
                           perPrompt: 1, subject: subject, erased: erased, classes: Set(classes), judge: judge,
                           s: s, budget: ["prompts": "\(s.paraphrasePrompts)", "samples per prompt": "1"],
                           concepts: concepts.map(\.name), start: start)
    }

    /// Ring-A-Bell's genetic searches (`ringABellRuns` per prompt length, each from a different neutral
    /// prompt). Model-agnostic: the found prompts can attack any number of erased models.
    public static func ringABellSearch(
        concepts: [ConceptSpec], subject: AttackSubject, settings s: AttackSettings, progress: ((String) -> Void)? = nil
    ) throws -> [RingABell.Found] {
        let classes = concepts.compactMap(\.classID)
        var found: [RingABell.Found] = []
        for k in s.ringABellLengths {
            var o = s.ringABell
            o.tokens = k; o.seed = s.seed
            let rab = RingABell(encoder: subject.encoder, options: o)
            let direction = try rab.conceptDirection(pairs: subject.conceptPairs(classes: classes, count: o.pairs, seed: o.seed))
            for r in 0..<s.ringABellRuns {
                let neutral = subject.neutralPrompt(seed: s.seed, index: UInt64(k * 100 + r))
                let f = try rab.search(base: neutral, direction: direction, runSeed: UInt64(k * 100 + r))
                progress?(String(format: "K=%d run %d: distance %.5f → %.5f: %@", k, r + 1, f.history.first ?? 0, f.distance, f.text))
                found.append(f)
            }
        }
        return found
    }

    /// Ring-A-Bell: the found prompts (searched now unless `known`) sampled on both models.
    public static func ringABell(
        subject: AttackSubject, erased: ErasedModel, concepts: [ConceptSpec], judge: ImageJudge,
        settings s: AttackSettings, progress: ((String) -> Void)? = nil, found known: [RingABell.Found]? = nil
    ) throws -> (AttackReport, original: [RGBImage], erased: [RGBImage], found: [RingABell.Found]) {
        let start = Date()
        let classes = concepts.compactMap(\.classID)
        let found = try known ?? ringABellSearch(concepts: concepts, subject: subject, settings: s, progress: progress)
        let o = s.ringABell
        let m = try measure(
            name: AttackName.ringABell.rawValue, texts: found.map(\.text), tokenIds: found.map(\.tokenIds), perPrompt: s.samplesPerPrompt,
            subject: subject, erased: erased, classes: Set(classes), judge: judge, s: s,
            budget: ["K": s.ringABellLengths.map(String.init).joined(separator: ","), "searches per K": "\(s.ringABellRuns)",
                     "eta": "\(o.eta)", "population": "\(o.population)", "generations": "\(o.generations)",
                     "samples per prompt": "\(s.samplesPerPrompt)"],
            concepts: concepts.map(\.name), start: start)
        return (m.0, m.original, m.erased, found)
    }
}

extension AttackRunner {
    /// The white-box embedding attack, one run per erased class; ASR pooled over the runs at each budget.
    public static func embedding(
        subject: AttackSubject, erased: ErasedModel, concepts: [ConceptSpec], judge: ImageJudge,
        settings s: AttackSettings, progress: ((String) -> Void)? = nil
    ) throws -> (AttackReport, runs: [EmbeddingAttack.Run], original: [RGBImage], erased: [RGBImage]) {
        let start = Date()
        var o = s.embedding
        o.seed = s.seed
        let attack = EmbeddingAttack(subject: subject, options: o, samplingSteps: s.steps, guidance: s.guidance)
        let results = try concepts.compactMap(\.classID).map {
            try attack.run(classID: $0, erased: erased, judge: judge, progress: progress)
        }
        let runs = results.map(\.run)
        let budgets = o.checkpoints.sorted()
        let curve = budgets.map { b in
            AttackReport.CurvePoint(budget: b, asr: runs.map { r in r.curve.first { $0.budget == b }?.asr ?? 0 }.reduce(0, +) / Double(max(1, runs.count)))
        }
        let prompts = runs.map { r in
            AttackReport.Prompt(text: "[\(o.tokens) optimised tokens] \(r.conceptPrompt)",
                                samples: r.samples, detectedErased: Int((r.curve.last?.asr ?? 0) * Double(r.samples) + 0.5),
                                detectedOriginal: Int(r.originalRate * Double(r.samples) + 0.5))
        }
        var report = AttackReport(
            attack: AttackName.embedding.rawValue, concepts: concepts.map(\.name), erasedModel: erased.name,
            samples: runs.map(\.samples).reduce(0, +), asr: curve.last?.asr ?? 0,
            originalASR: runs.map(\.originalRate).reduce(0, +) / Double(max(1, runs.count)),
            budget: ["tokens": "\(o.tokens)", "optimiser steps": budgets.map(String.init).joined(separator: ","),
                     "lr": "\(o.lr)", "pooled lr": "\(o.pooledLR)", "seeds per step": "\(o.batch)", "evaluation seeds": "\(o.evalSamples)",
                     "pooled embedding optimised": "\(o.learnPooled)"],
            seconds: Date().timeIntervalSince(start), prompts: prompts)
        report.curve = curve
        return (report, runs, results.flatMap(\.original), results.flatMap(\.attacked))
    }

    /// The relearning attack: fine-tuning curves of the erased model (masks kept, and free) and of the
    /// original (control). ASR = the detection rate after the full budget of the first erased variant.
    public static func relearning(
        subject: AttackSubject, erased: ErasedModel, concepts: [ConceptSpec], judge: ImageJudge,
        settings s: AttackSettings, progress: ((String) -> Void)? = nil
    ) throws -> AttackReport {
        let start = Date()
        var o = s.relearning
        o.seed = s.seed
        let attack = RelearningAttack(subject: subject, options: o, samplingSteps: s.steps, guidance: s.guidance)
        let (curves, originalRate) = try attack.run(erased: erased, classes: concepts.compactMap(\.classID),
                                                    judge: judge, progress: progress)
        let first = curves[0]
        var report = AttackReport(
            attack: AttackName.relearning.rawValue, concepts: concepts.map(\.name), erasedModel: erased.name,
            samples: o.evalSamples, asr: first.points.last?.asr ?? 0, originalASR: originalRate,
            budget: ["images": "\(o.images)", "fine-tuning steps": o.checkpoints.sorted().map(String.init).joined(separator: ","),
                     "lr": "\(o.lr)", "evaluation prompts": "\(o.evalSamples)", "variant of the ASR": first.variant],
            seconds: Date().timeIntervalSince(start), prompts: [])
        report.curve = curves.flatMap { c in c.points.map { AttackReport.CurvePoint(variant: c.variant, budget: $0.budget, asr: $0.asr) } }
        report.stepsToRecover = Dictionary(uniqueKeysWithValues: curves.map { ($0.variant, $0.stepsToRecover) })
        return report
    }
}

/// One attack's outcome: its report and, for prompt attacks, the original's and the erased model's samples.
public struct AttackOutcome {
    public let report: AttackReport
    public let original: [RGBImage]
    public let erased: [RGBImage]
}

extension AttackRunner {
    /// Runs `names` against `erased`. Ring-A-Bell's found prompts are kept in `ringABellFound` (a search
    /// serves every erased model of the same concepts).
    public static func run(
        _ names: [AttackName], subject: AttackSubject, erased: ErasedModel, concepts: [ConceptSpec],
        judge: ImageJudge, settings s: AttackSettings,
        ringABellFound: inout [RingABell.Found]?, progress: ((String) -> Void)? = nil
    ) throws -> [AttackOutcome] {
        try names.map { name in
            switch name {
            case .paraphrase:
                let r = try paraphrase(subject: subject, erased: erased, concepts: concepts, judge: judge, settings: s)
                return AttackOutcome(report: r.0, original: r.original, erased: r.erased)
            case .ringABell:
                let r = try ringABell(subject: subject, erased: erased, concepts: concepts, judge: judge, settings: s,
                                      progress: { progress?("ring-a-bell: \($0)") }, found: ringABellFound)
                ringABellFound = r.found
                return AttackOutcome(report: r.0, original: r.original, erased: r.erased)
            case .embedding:
                let r = try embedding(subject: subject, erased: erased, concepts: concepts, judge: judge, settings: s,
                                      progress: progress)
                return AttackOutcome(report: r.0, original: r.original, erased: r.erased)
            case .relearning:
                let r = try relearning(subject: subject, erased: erased, concepts: concepts, judge: judge, settings: s,
                                       progress: progress)
                return AttackOutcome(report: r, original: [], erased: [])
            }
        }
    }
}
