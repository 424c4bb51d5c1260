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
    @Flag(help: "Also write every sample and the real reference scenes as PNG under OUT/samples (for scripts/evaluation/standard_fid.py).") var saveSamples = false

    func validate() throws {
        if masks == nil && erased == nil && compare.isEmpty { throw ValidationError("give --masks FILE, --erased PATH or --compare RUN…") }
        if masks != nil && erased != nil { throw ValidationError("give --masks or --erased, not both (use --compare for more)") }
        if samples < 1 || perClass < 1 { throw ValidationError("--samples and --per-class must be ≥ 1") }
        if realScenes < 2 { throw ValidationError("--real-scenes must be ≥ 2") }
        if steps < 1 { throw ValidationError("--steps must be ≥ 1") }
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
            let fm = FileManager.default
            guard fm.fileExists(atPath: detector) else { throw CLIError("--detector: \(detector) not found") }
            let loader = try FluxWeightLoader(path: model)
            let base = FluxTransformer(weights: try loader.load(as: Float.self))
            let baseHash = try modelHash(model)
            let encoder = try PromptEncoder()
            var runs: [ErasedModel] = []
            if let m = masks { runs.append(try Self.load(m, as: .masks, base: base, baseHash: baseHash, encoder: encoder, option: "--masks")) }
            if let e = erased { runs.append(try Self.load(e, as: .checkpoint, base: base, baseHash: baseHash, encoder: encoder, option: "--erased")) }
            for c in compare { runs.append(try Self.load(c, as: nil, base: base, baseHash: baseHash, encoder: encoder, option: "--compare")) }
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
            let images = Evaluator.sampleCount(concepts: concepts, erasedModels: runs.count, protocol: p)
            log("evaluating \(concepts.map(\.name).joined(separator: ", ")): \(runs.map(\.name).joined(separator: ", ")) vs \(model), \(images) samples")
            let bar = Progress(total: images * steps, label: "evaluate")
            let result = try Evaluator.run(base: base, baseName: model, erased: runs, concepts: concepts, encoder: encoder,
                                           detector: det, protocol: p) { label, done, _ in
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
                    for outcome in try AttackRunner.run(names, base: base, erased: run, concepts: concepts, encoder: encoder, detector: det,
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
                let real = try Evaluator.realScenes(classes: neutralClasses, protocol: p).map(\.image)
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

    enum Kind { case masks, checkpoint }

    /// A mask file, an erase output folder (its masks.safetensors and report.json) or a checkpoint.
    static func load(_ path: String, as kind: Kind?, base: FluxTransformer<Float>, baseHash: String, encoder: PromptEncoder,
                     option: String) throws -> ErasedModel {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { throw CLIError("\(option): \(path) does not exist") }
        let maskInDir = (path as NSString).appendingPathComponent("masks.safetensors")
        let isEraseDir = isDir.boolValue && fm.fileExists(atPath: maskInDir)
        // The output folder of a weight method (`mce erase --method finetune|esd`): its model/ and report.json.
        let modelInDir = (path as NSString).appendingPathComponent("model")
        let isWeightEraseDir = isDir.boolValue && !isEraseDir && fm.fileExists(atPath: modelInDir)
            && !fm.fileExists(atPath: (path as NSString).appendingPathComponent("config.json"))
        // A column is named after its erase folder when the file has the standard name inside one.
        let last = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let name = isEraseDir || isWeightEraseDir ? (path as NSString).lastPathComponent
            : ["masks", "model"].contains(last) ? ((path as NSString).deletingLastPathComponent as NSString).lastPathComponent + (last == "model" ? "-baked" : "")
            : last
        let looksLikeMasks = isEraseDir || (!isDir.boolValue && (try? MaskFile.read(path)) != nil)
        if kind == .masks || (kind == nil && looksLikeMasks) {
            guard looksLikeMasks else { throw CLIError("\(option): \(path) is neither a mask file nor an `mce erase` output folder") }
            let file = try MaskFile.read(isEraseDir ? maskInDir : path, config: base.config)
            if let h = file.metadata[MaskFile.Key.modelHash], h != baseHash {
                log("warning: \(path) was learned on a model with SHA-256 \(h.prefix(12))…, --model has \(baseHash.prefix(12))…")
            }
            let summary = (((isEraseDir ? maskInDir : path) as NSString).deletingLastPathComponent as NSString).appendingPathComponent("report.json")
            let cost = eraseCost(summary)
            return ErasedModel(name: name, source: path, masks: file.maskSet(), maskFile: file, encoder: try file.textEncoder(base: encoder),
                               eraseSeconds: cost?.eraseSeconds, peakRSSMiB: cost?.peakRSSMiB)
        }
        let loader: FluxWeightLoader
        do { loader = try FluxWeightLoader(path: isEraseDir || isWeightEraseDir ? modelInDir : path) } catch {
            throw CLIError("\(option): \(path) is not a loadable checkpoint: \(error)")
        }
        guard loader.config == base.config else {
            throw CLIError("\(option): \(path) has a different architecture from --model (\(loader.config) vs \(base.config))")
        }
        let cost = isWeightEraseDir ? eraseCost((path as NSString).appendingPathComponent("report.json")) : nil
        // A baked checkpoint from `mce erase` with text-encoder sites has the erased text encoder beside it.
        let bakedText = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("text_encoder")
        var textEncoder: PromptEncoder?
        if kind == .checkpoint || !isDir.boolValue || (path as NSString).lastPathComponent == "model",
           fm.fileExists(atPath: (bakedText as NSString).appendingPathComponent("model.safetensors")) {
            textEncoder = try PromptEncoder(directory: bakedText)
            textEncoder!.paddedLength = encoder.paddedLength
            log("\(option): using the erased text encoder \(bakedText) beside \(path)")
        }
        return ErasedModel(name: name, source: path, model: FluxTransformer(weights: try loader.load(as: Float.self)),
                           encoder: textEncoder, eraseSeconds: cost?.eraseSeconds, peakRSSMiB: cost?.peakRSSMiB)
    }

    struct EraseSummaryCost: Decodable { let cost: ErasureCost? }

    /// The cost an `mce erase` report.json records, if the file is there and has one.
    static func eraseCost(_ reportPath: String) -> ErasureCost? {
        (try? Data(contentsOf: URL(fileURLWithPath: reportPath))).flatMap { try? JSONDecoder().decode(EraseSummaryCost.self, from: $0) }?.cost
    }
}

/// The measurements of each erased model, one block per model.
func printSummary(_ r: EvaluationReport) {
    for run in r.runs {
        print("\(run.name):")
        for (o, e) in zip(r.original.conceptSets, run.metrics.conceptSets) {
            let ci = Metrics.wilsonInterval(rate: e.detectionRate, trials: e.prompts)
            print(String(format: "  concept ACC, %@: %.3f → %.3f (95%% interval %.3f–%.3f, %d prompts)", o.name, o.detectionRate, e.detectionRate,
                         ci.lower, ci.upper, e.prompts))
        }
        let n = run.metrics.neutral, ci = Metrics.wilsonInterval(rate: n.objectAccuracy, trials: n.prompts)
        print(String(format: "  neutral object accuracy %.3f → %.3f (95%% interval %.3f–%.3f, %d prompts), SSIM %.3f, feature distance %.4f, FID to original %.1f",
                     r.original.neutral.objectAccuracy, n.objectAccuracy, ci.lower, ci.upper, n.prompts, run.comparison.neutralSSIM,
                     run.comparison.neutralFeatureDistance, run.comparison.neutralFIDToOriginal ?? .nan))
        if let c = run.comparison.neutralAccuracyChange {
            print(String(format: "  neutral object accuracy change %+.3f (paired 95%% interval %+.3f to %+.3f, same prompts and seeds)", c.change, c.lower, c.upper))
        }
        print(String(format: "  concept prompts: background colour kept %.3f, object colour kept %.3f",
                     run.metrics.conceptBgColorAccuracy, run.metrics.conceptObjColorAccuracy))
        if let worst = run.ripple.min(by: { $0.delta < $1.delta }) {
            print(String(format: "  largest ripple: %@ %.3f → %.3f", worst.name, worst.before, worst.after))
        }
        for a in (r.attacks ?? []) where a.run == run.name {
            print(String(format: "  attack %@: ASR %.3f (original model %.3f), %d samples, %.0f s", a.attack, a.asr, a.originalASR, a.samples, a.seconds))
        }
        let t = run.targets, th = r.evaluationProtocol.thresholds
        func mark(_ ok: Bool) -> String { ok ? "met" : "NOT met" }
        print(String(format: "  targets: concept ACC ≤ %.2f %@; neutral accuracy within %.2f %@; SSIM ≥ %.2f %@; background kept ≥ %.2f %@",
                     th.conceptGone, mark(t.conceptGone), th.neutralDrop, mark(t.neutralKept), th.ssim, mark(t.ssim),
                     th.background, mark(t.background)))
    }
}
