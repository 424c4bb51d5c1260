import ArgumentParser
import Attacks
import BaseModel
import BLAS
import Detector
import Erasure
import Evaluation
import Flux
import Foundation
import World

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measures an erasure with the pinned protocol: is the concept gone, is the rest intact. Writes report.json, report.html and PNG grids.",
        discussion: """
        The erased model is the base model with a mask file (--masks FILE, or an `mce erase` output folder) or a \
        baked checkpoint (--erased PATH). --compare adds more erased models (mask files, erase folders or \
        checkpoints), one report column each; runs whose masks record β give a β-sweep plot.
        """)

    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: "Base (original) model.") var model: String = BaseModelSpec.defaultModelPath
    @Option(help: "Mask file, or the output folder of `mce erase`.") var masks: String?
    @Option(help: "A baked (erased) checkpoint.") var erased: String?
    @Option(parsing: .upToNextOption, help: "More erased models: mask files, erase output folders or checkpoints.") var compare: [String] = []
    @Option(name: .long, help: "Erased concept (repeatable; default: the mask file's concept).") var concept: [String] = []
    @Option(help: "Prompts per concept set.") var samples: Int = EvaluationProtocol().samples
    @Option(help: "Neutral prompts per other class.") var perClass: Int = EvaluationProtocol().perClass
    @Option(help: "Real test scenes for the FIDs.") var realScenes: Int = EvaluationProtocol().realScenes
    @Option(help: "Seed of prompts, colours and noise.") var seed: UInt64 = 0
    @Option(help: "Euler steps.") var steps: Int = BaseModelSpec.defaultSteps
    @Option(help: "Classifier-free guidance scale (1 = off).") var guidance: Double = BaseModelSpec.defaultGuidance
    @Option(help: "Detector weights.") var detector: String = SceneDetector.defaultPath
    @Option(help: "Output folder.") var out: String = "out/evaluate"
    @Option(help: "Attacks to run on every erased model and add to the report: all, or a comma-separated list of paraphrase, ring-a-bell, embedding, relearning (budgets: `mce attack`'s defaults).")
    var attacks: String?
    @Option(help: "Prompts sampled per model call (speed only: the samples differ by float rounding; at 1 each equals `mce generate`'s bit for bit).")
    var sampleBatch: Int = 32
    @Flag(help: "Also write every sample and the real reference scenes as PNG under OUT/samples (for scripts/evaluation/standard_fid.py).") var saveSamples = false

    func validate() throws {
        try precisionOption.validateFloatOnly()
        if masks == nil && erased == nil && compare.isEmpty { throw ValidationError("give --masks FILE, --erased PATH or --compare RUN…") }
        if masks != nil && erased != nil { throw ValidationError("give --masks or --erased, not both (use --compare for more)") }
        if samples < 1 || perClass < 1 { throw ValidationError("--samples and --per-class must be ≥ 1") }
        if realScenes < 2 { throw ValidationError("--real-scenes must be ≥ 2") }
        if steps < 1 { throw ValidationError("--steps must be ≥ 1") }
        if sampleBatch < 1 { throw ValidationError("--sample-batch must be ≥ 1") }
        try checkGuidance(guidance)
        if let a = attacks { _ = try attackNames(a) }
    }

    func attackNames(_ text: String) throws -> [AttackName] {
        if text == "all" { return AttackName.allCases }
        return try text.split(separator: ",").map { part in
            let t = part.trimmingCharacters(in: .whitespaces)
            guard let n = AttackName(rawValue: t) else {
                throw ValidationError("--attacks must be all or a comma-separated list of \(AttackName.allCases.map(\.rawValue).joined(separator: ", ")), got '\(t)'")
            }
            return n
        }
    }

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            let fm = FileManager.default
            guard fm.fileExists(atPath: detector) else { throw CLIError("--detector: \(detector) not found") }
            let loader = try FluxWeightLoader(path: model)
            let base = FluxTransformer(weights: try loader.load(as: Float.self))
            let baseHash = try modelHash(model)
            let encoder = try PromptEncoder()
            var runs: [ErasedModel] = []
            if let m = masks { runs.append(try ErasedModel.load(m, as: .masks, base: base, baseHash: baseHash, encoder: encoder, option: "--masks", log: log)) }
            if let e = erased { runs.append(try ErasedModel.load(e, as: .checkpoint, base: base, baseHash: baseHash, encoder: encoder, option: "--erased", log: log)) }
            for c in compare { runs.append(try ErasedModel.load(c, as: nil, base: base, baseHash: baseHash, encoder: encoder, option: "--compare", log: log)) }
            var names = Set<String>()
            for i in runs.indices {   // distinct column names
                var n = runs[i].name, k = 2
                while names.contains(n) { n = "\(runs[i].name)-\(k)"; k += 1 }
                runs[i].name = n; names.insert(n)
            }
            let concepts = try Self.worldConcepts(concept, recordedIn: runs)
            var p = EvaluationProtocol()
            p.samples = samples; p.perClass = perClass; p.seed = seed; p.samplingSteps = steps; p.guidance = guidance
            p.realScenes = realScenes
            let det = try SceneDetector(path: detector)
            let subject = WorldSubject(transformer: base, encoder: encoder)
            let images = Evaluator.sampleCount(concepts: concepts, classCount: subject.classNames.count, erasedModels: runs.count, protocol: p)
            log("evaluating \(concepts.map(\.name).joined(separator: ", ")): \(runs.map(\.name).joined(separator: ", ")) vs \(model), \(images) samples")
            let bar = Progress(total: images * steps, label: "evaluate")
            let result = try Evaluator.run(subject: subject, baseName: model, erased: runs, concepts: concepts, judge: det,
                                           protocol: p, sampleBatch: sampleBatch) { label, done, _ in
                bar.update(min(done, images * steps), extra: label)
            }
            var report = result.report
            if let a = attacks {
                let names = try attackNames(a)
                var s = AttackSettings()
                s.seed = seed; s.steps = steps; s.guidance = guidance
                var found: [RingABell.Found]? = nil
                var rows: [EvaluationReport.AttackRow] = []
                for (i, run) in runs.enumerated() {
                    s.relearning.control = i == 0     // the control does not depend on the erased model
                    for outcome in try AttackRunner.run(names, subject: subject, erased: run, concepts: concepts, judge: det,
                                                        settings: s, ringABellFound: &found, progress: { log("\(run.name): \($0)") }) {
                        let r = outcome.report
                        log(String(format: "%@: %@ ASR %.3f (original %.3f), %.0f s", run.name, r.attack, r.asr, r.originalASR, r.seconds))
                        rows.append(.init(run: run.name, attack: r.attack, asr: r.asr, originalASR: r.originalASR, samples: r.samples,
                                          seconds: r.seconds, budget: r.budget.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "; "),
                                          curve: r.curve))
                    }
                }
                report.attacks = rows
            }
            let files = try ReportWriter.write(report, samples: result.samples, to: out)
            if saveSamples {
                let neutralClasses = Set((0..<Vocabulary.classCount).filter { c in !concepts.contains { $0.classID == c } })
                let real = try subject.realImages(classes: neutralClasses, protocol: p).map(\.image)
                try ReportWriter.writeSamples(result.samples, runNames: report.runs.map(\.name), real: real, to: out)
                print("samples: \(out)/samples")
            }
            printSummary(report)
            print("report: \(files.html)\n        \(files.json)")
        }
    }

    /// The erased concepts: `--concept` texts, or else the concept the first mask file records; each must be a
    /// world class, the only concepts the detector measures.
    static func worldConcepts(_ texts: [String], recordedIn runs: [ErasedModel]) throws -> [ConceptSpec] {
        var texts = texts
        if texts.isEmpty, let c = runs.compactMap(\.maskFile).first?.metadata[MaskFile.Key.concept] {
            texts = c.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        guard !texts.isEmpty else { throw CLIError("give --concept (the erased model records none)") }
        let concepts = try texts.map { try ConceptSpec.resolve($0) }
        for c in concepts where c.classID == nil {
            throw CLIError("--concept '\(c.name)': the detector measures the world's classes only (\(Vocabulary.classes.map(\.name).joined(separator: ", ")))")
        }
        return concepts
    }
}

/// The measurements of each erased model, one block per model.
func printSummary(_ r: EvaluationReport) {
    for line in r.summaryLines { print(line) }
}
