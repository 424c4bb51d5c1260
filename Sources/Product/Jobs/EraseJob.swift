import BLAS
import Erasure
import Evaluation
import Flux
import Foundation
import Pipeline
import SafeTensors
import TextEncoder

/// What a user asks `mce erase` for, as given: every option with its default, in one place. `EraseJob` resolves
/// the defaults that depend on the method and the sites, and `validate()` refuses bad values by their flag.
public struct EraseRequest: Sendable {
    public var concepts: [String] = []
    public var synonyms: [String] = []
    public var model = ""
    public var method = "mask"
    public var eta = 1.0
    public var target: String?
    public var beta: Double?
    public var steps = 20
    public var guidance = 3.0
    public var sites: String?
    public var iterations: Int?
    public var epochs: Int?
    public var binaryFinish = 0
    public var batch = 4
    public var lr: Double?
    public var lrSchedule = "constant"
    public var adamEps: Double?
    public var textPreserve: Double?
    public var textPreservePrompts: Int?
    public var unitCost = 0.0
    public var textAblation = "zero"
    public var relaxation = "hard-concrete"
    public var binarise: String?
    public var conceptPrompts = 20
    public var neutralPrompts = 20
    public var promptFile: String?
    public var neutralFile: String?
    public var freshNoise = false
    public var filter = false
    public var seed: UInt64 = 0
    public var restarts = 1
    public var retries = 1
    public var brokenFactor = 1.0
    public var out = "out/erase"
    public var resume = false
    public var checkpointEvery = 10
    public var evalPrompts = EvaluationProtocol().samples
    public var evalPerClass = EvaluationProtocol().perClass

    public init() {}

    /// The defaults, for the command line's help.
    public static let defaults = EraseRequest()

    /// Refuses values no run can use, naming the flag.
    public func validate() throws {
        func bad(_ m: String) -> ErasureError { .badArgument(m) }
        if concepts.isEmpty { throw bad("give at least one --concept") }
        if steps < 1 { throw bad("--steps (sampling steps N) must be ≥ 1, got \(steps)") }
        if let beta, !(beta >= 0) { throw bad("--beta must be ≥ 0, got \(beta)") }
        if batch < 1 || checkpointEvery < 1 || evalPrompts < 0 || evalPerClass < 1 {
            throw bad("--batch, --checkpoint-every and --eval-per-class must be ≥ 1, --eval-prompts ≥ 0")
        }
        if let i = iterations, i < 1 { throw bad("--iterations must be ≥ 1") }
        if restarts < 1 { throw bad("--restarts must be ≥ 1, got \(restarts)") }
        if retries < 0 { throw bad("--retries must be ≥ 0, got \(retries)") }
        if !(brokenFactor >= 0 && brokenFactor.isFinite) { throw bad("--broken-factor must be ≥ 0 and finite, got \(brokenFactor)") }
        if let e = epochs, e < 1 { throw bad("--epochs must be ≥ 1") }
        if iterations != nil && epochs != nil { throw bad("give --iterations or --epochs, not both") }
        if let lr, !(lr > 0) { throw bad("--lr must be > 0") }
        if let adamEps, !(adamEps > 0 && adamEps.isFinite) { throw bad("--adam-eps must be > 0 and finite, got \(adamEps)") }
        if let textPreserve, !(textPreserve >= 0 && textPreserve.isFinite) { throw bad("--text-preserve must be ≥ 0 and finite, got \(textPreserve)") }
        if let textPreservePrompts, textPreservePrompts < 1 { throw bad("--text-preserve-prompts must be ≥ 1") }
        if !(unitCost >= 0 && unitCost.isFinite) { throw bad("--unit-cost must be ≥ 0 and finite, got \(unitCost)") }
        if !eta.isFinite { throw bad("--eta must be finite") }
        if let beta, !beta.isFinite { throw bad("--beta must be finite, got \(beta)") }
        if let problem = guidanceProblem(guidance) { throw bad(problem) }
        // At guidance 0 the sampler follows the empty prompt only: every prompt gives the same sample, so the
        // loss is 0 and nothing can be erased.
        if guidance == 0 { throw bad("--guidance 0 samples the empty prompt only, so there is nothing to erase; use 1 (off) or more") }
    }
}

/// What an erase run reports in OUT/report.json.
public struct EraseSummary: Codable {
    public let options: ErasureOptions
    public let history: [ErasureStepLog]
    public let cost: ErasureCost
    public let maskedUnits: Int
    public let totalUnits: Int
    public let maskedPerSite: [String: Int]
    public let evaluation: EvaluationReport?
    /// The training check of every run (in order), and the run kept (nil: the runs were averaged).
    public let checks: [TrainingCheck]
    public let keptRun: Int?
}

/// How a job talks to its caller: lines for the log (stderr), lines of results (stdout), and progress bars.
public struct JobOutput {
    public var log: (String) -> Void
    public var say: (String) -> Void
    /// A progress bar for `total` units (`initial` already done): returns its update function (done, extra text).
    public var progress: (_ label: String, _ total: Int, _ initial: Int) -> (_ done: Int, _ extra: String) -> Void

    public init(log: @escaping (String) -> Void, say: @escaping (String) -> Void,
                progress: @escaping (String, Int, Int) -> (Int, String) -> Void) {
        self.log = log; self.say = say; self.progress = progress
    }

    /// Nothing printed (tests).
    public static let silent = JobOutput(log: { _ in }, say: { _ in }, progress: { _, _, _ in { _, _ in } })
}

/// `mce erase` as a library call: resolves the request's defaults against the subject, trains the run (one per
/// restart; with one, a retry with the next seed while the training check finds broken prompts), keeps the
/// run the check prefers, writes the mask file and the baked checkpoint (and the erased text encoder) or, for
/// a weight method, the fine-tuned checkpoint, measures the erased model with the pinned protocol when a judge
/// is given, and writes OUT/report.json. Every output is written to a temporary name and renamed.
public struct EraseJob {
    public let request: EraseRequest
    public let subject: EvaluationSubject
    /// Reads samples for `--filter` and the evaluation afterwards; nil: neither.
    public let judge: ImageJudge?
    public let output: JobOutput

    public init(request: EraseRequest, subject: EvaluationSubject, judge: ImageJudge?, output: JobOutput) {
        self.request = request; self.subject = subject; self.judge = judge; self.output = output
    }

    /// The options of the first run: the request with the defaults of its method and sites filled in.
    public func options() throws -> ErasureOptions {
        let q = request
        try q.validate()
        let cfg = subject.transformer.config, encoder = subject.encoder
        var o = ErasureOptions()
        o.method = try ErasureMethod.parse(q.method)
        o.esdEta = q.eta
        o.concepts = try q.concepts.map { try subject.concept($0, synonyms: q.synonyms) }
        o.target = try resolveTarget(q.target ?? o.method.defaultTarget(concepts: o.concepts.count), concepts: o.concepts)
        o.beta = q.beta ?? o.method.defaultBeta; o.samplingSteps = q.steps; o.guidance = q.guidance
        o.sites = try ErasureOptions.expandSites([q.sites ?? o.method.defaultSiteKinds.joined(separator: ",")], config: cfg,
                                                 textEncoderLayers: encoder.miniLM.layerCount)
        o.relaxation = try MaskRelaxation.named(q.relaxation)
        o.lr = q.lr ?? o.method.defaultLearningRate; o.batch = q.batch; o.freshNoise = q.freshNoise; o.seed = q.seed
        o.adamEps = q.adamEps
        guard let schedule = ErasureOptions.LRSchedule(rawValue: q.lrSchedule) else {
            throw ErasureError.badArgument("--lr-schedule must be constant or cosine, got '\(q.lrSchedule)'")
        }
        o.lrSchedule = schedule == .constant ? nil : schedule
        let textSites = !o.textEncoderLayers.isEmpty
        if (q.textPreserve ?? 0) > 0 && !textSites { throw ErasureError.badArgument("--text-preserve needs text-encoder sites (--sites …,text_ff)") }
        // With text-encoder sites the term is on unless switched off (--text-preserve 0: the authors' objective).
        let gamma = q.textPreserve ?? (textSites ? ErasureOptions.defaultTextPreserve : 0)
        o.textPreserve = gamma > 0 ? gamma : nil; o.textPreservePrompts = q.textPreservePrompts
        if q.unitCost > 0 && !textSites { throw ErasureError.badArgument("--unit-cost needs text-encoder sites (--sites …,text_ff)") }
        o.unitCost = q.unitCost > 0 ? q.unitCost : nil
        guard let ablation = ErasureOptions.TextAblation(rawValue: q.textAblation) else {
            throw ErasureError.badArgument("--text-ablation must be zero or mean, got '\(q.textAblation)'")
        }
        if ablation == .mean && !textSites { throw ErasureError.badArgument("--text-ablation mean needs text-encoder sites (--sites …,text_ff)") }
        o.textAblation = ablation == .zero ? nil : ablation
        let binarisation = try self.binarisation(textSites: textSites)
        if q.binaryFinish != 0 {
            guard o.method.learnsMasks else { throw ErasureError.badArgument("--binary-finish is for mask methods, not \(o.method.rawValue)") }
            guard case .threshold(let t) = binarisation else {
                throw ErasureError.badArgument("--binary-finish needs --binarise threshold[:T], not \(binarisation)")
            }
            o.binaryFinish = q.binaryFinish; o.finishThreshold = t == 0 ? nil : t
        }
        if q.restarts > 1 {
            guard o.method.learnsMasks else {
                throw ErasureError.badArgument("--restarts is for mask methods (their runs' mask logits are averaged), not \(o.method.rawValue)")
            }
            o.restarts = q.restarts
        }
        return o
    }

    /// `--binarise`, or its default for the sites.
    func binarisation(textSites: Bool) throws -> Binarisation {
        try request.binarise.map(Binarisation.parse) ?? ErasureOptions.defaultBinarisation(textEncoderSites: textSites)
    }

    /// `--target`: null, deconcept, an anchor phrase, or `nearest`, which the subject resolves (one concept only).
    func resolveTarget(_ text: String, concepts: [ConceptSpec]) throws -> ErasureTarget {
        guard text.trimmingCharacters(in: .whitespaces).lowercased() == "nearest" else { return try ErasureTarget.parse(text) }
        guard concepts.count == 1 else {
            throw ErasureError.badArgument("--target nearest takes one --concept; give several concepts an anchor phrase instead")
        }
        let near = try subject.nearestAnchor(to: concepts[0])
        output.log(String(format: "target: the nearest class to '%@' is '%@' (cosine %.3f)", concepts[0].name, near.name, near.similarity))
        return .anchor(near.name)
    }

    /// The training prompts of the run with seed `s`: generated or from files, then the optional filter.
    func trainingItems(_ o: ErasureOptions, seed s: UInt64) throws -> [ErasureItem] {
        let q = request, encoder = subject.encoder
        var items: [ErasureItem]
        if let file = q.promptFile {
            items = try ErasurePrompts.files(conceptFile: file, neutralFile: q.neutralFile, concepts: o.concepts, target: o.target, seed: s,
                                             classOf: subject.classID(of:))
        } else {
            if q.neutralFile != nil { throw ErasureError.badArgument("--neutral needs --prompts (generated prompts include their own neutral set)") }
            items = try subject.trainingItems(concepts: o.concepts, conceptCount: q.conceptPrompts, neutralCount: q.neutralPrompts,
                                              target: o.target, seed: s)
        }
        for it in items {   // refuse unknown words before any work
            _ = try encoder.encode(it.prompt)
            if !it.targetPrompt.isEmpty { _ = try encoder.encode(it.targetPrompt) }
        }
        if q.filter {
            guard let judge else { throw ErasureError.badArgument("--filter needs the detector") }
            let gen = Generator(model: subject.transformer, encoder: encoder, space: subject, steps: q.steps, guidanceScale: q.guidance)
            let concepts = items.filter(\.isConcept)
            let imgs = try subject.images(gen, prompts: concepts.map(\.prompt), seeds: concepts.map(\.seed))
            let keep = zip(concepts, judge.judge(imgs)).filter { $0.0.classID == nil || $0.1.classID == $0.0.classID }.map(\.0.prompt)
            output.log("filter: \(keep.count) of \(concepts.count) concept prompts show the concept")
            guard !keep.isEmpty else { throw ErasureError.badArgument("--filter: no concept prompt's original sample shows the concept") }
            items = items.filter { !$0.isConcept || keep.contains($0.prompt) }
        }
        return items
    }

    /// One training run: its prompts, logits, history and, for mask methods, its binary masks and their check.
    struct Run {
        let items: [ErasureItem]; let logits: [Site: [Float]]; let fill: [Site: [Float]]
        let history: [ErasureStepLog]
        let binary: [Site: [Float]]?; let check: TrainingCheck?
    }

    /// Runs the job; returns what report.json holds.
    @discardableResult
    public func run() throws -> EraseSummary {
        let q = request, fm = FileManager.default, out = q.out
        var o = try options()
        let cfg = subject.transformer.config, encoder = subject.encoder, steps = q.steps
        let binarisation = try self.binarisation(textSites: !o.textEncoderLayers.isEmpty)
        var runs: [Run] = []
        var lastEraser: Eraser?
        let eraseStart = Date()
        let maxRuns = q.restarts > 1 || !o.method.learnsMasks ? q.restarts : 1 + q.retries
        for r in 0..<maxRuns {
            let runOptions = o.restart(r)
            let items = try trainingItems(o, seed: runOptions.seed)
            if r == 0 {
                let poolSize = o.method == .esd ? items.filter(\.isConcept).count : items.count
                o.iterations = q.iterations ?? ((q.epochs ?? 0) > 0 ? max(1, (q.epochs! * poolSize + q.batch - 1) / q.batch) : o.method.defaultIterations)
            }
            var ro = runOptions; ro.iterations = o.iterations
            let eraser = try Eraser(subject: subject, items: items, options: ro)
            let statePath = (out as NSString).appendingPathComponent(r == 0 ? "state.safetensors" : "state-\(r + 1).safetensors")
            if q.resume {
                if fm.fileExists(atPath: statePath) {
                    try eraser.loadState(from: statePath)
                    output.log("\(q.restarts > 1 ? "run \(r + 1): " : "")resumed at iteration \(eraser.iteration)")
                } else if r == 0 {
                    throw ErasureError.badArgument("--resume: no state at \(statePath)")
                }
            }
            if o.effectiveUnitCost > 0 {
                let t0 = Date()
                let w = try eraser.textUnitCosts().values.flatMap { $0 }.sorted()
                output.log(String(format: "unit costs of %d text-encoder units in %.1f s: median %.3g, 90th percentile %.3g, largest %.3g (×κ %g)",
                                  w.count, Date().timeIntervalSince(t0), w[w.count / 2], w[w.count * 9 / 10], w.last!, o.effectiveUnitCost))
            }
            let nc = items.filter(\.isConcept).count
            let which = q.restarts > 1 ? " run \(r + 1) of \(q.restarts) (seed \(ro.seed))" : ""
            output.log("erasing \(o.concepts.map(\.name).joined(separator: ", ")) (method \(o.method.rawValue))\(which): \(nc) concept + \(items.count - nc) neutral prompts, target \(o.target), β \(o.beta), N \(steps), guidance \(q.guidance), \(eraser.sites.count) sites (\(eraser.sites.map { $0.width(cfg, textUnits: encoder.miniLM.intermediateSize) }.reduce(0, +)) units), \(o.iterations) iterations")
            let tp = output.progress("targets", eraser.pool.count * steps, 0)
            try eraser.prepareTargets { d, _ in tp(d, "") }
            let bar = output.progress(q.restarts > 1 ? "erase \(r + 1)/\(q.restarts)" : "erase", o.iterations, eraser.iteration)
            while eraser.iteration < o.iterations {
                let l = try eraser.step()
                let text = (l.textPreserveLoss.map { String(format: "  text %.5f", $0) } ?? "")
                    + (l.unitCostLoss.map { String(format: "  units %.5f", $0) } ?? "")
                bar(eraser.iteration, String(format: "erase %.4f  preserve %.5f", l.eraseLoss, l.preserveLoss) + text + "  masked \(l.expectedMasked)")
                if eraser.iteration % q.checkpointEvery == 0 || eraser.iteration == o.iterations { try eraser.saveState(to: statePath) }
            }
            var binary: [Site: [Float]]?, check: TrainingCheck?
            if o.method.learnsMasks {
                let b = binarisation.apply(eraser.logitArrays)
                let cp = output.progress("check", eraser.checkWork, 0)
                let c = try eraser.check(masks: b, brokenFactor: q.brokenFactor) { d, _ in cp(d, "") }
                output.log(Self.describe(c, binarisation: binarisation))
                binary = b; check = c
            }
            let fill = Dictionary(uniqueKeysWithValues: eraser.textFill.map { (Site.textEncoder(layer: $0.key), $0.value) })
            runs.append(Run(items: items, logits: eraser.logitArrays, fill: fill, history: eraser.history, binary: binary, check: check))
            lastEraser = eraser
            if q.restarts == 1, let c = check {
                if c.brokenCount == 0 { break }
                if r + 1 < maxRuns {
                    output.log("training check: \(c.brokenCount) broken prompts; training again with seed \(o.restart(r + 1).seed) (--retries \(q.retries))")
                }
            }
        }
        // With one restart, the run the training check prefers; with several, all of them (averaged below).
        let kept = q.restarts > 1 ? nil : runs.indices.min { a, b in
            guard let ca = runs[a].check, let cb = runs[b].check else { return false }
            return ca.isBetter(than: cb)
        }
        if let k = kept, runs.count > 1 {
            output.log("keeping run \(k + 1) of \(runs.count) (seed \(o.restart(k).seed)): \(runs[k].check!.brokenCount) broken prompts, objective \(String(format: "%.5f", runs[k].check!.objective))")
        }
        let eraser = lastEraser!
        let items = kept.map { runs[$0].items } ?? runs.flatMap(\.items)

        let cost = ErasureCost(eraseSeconds: Date().timeIntervalSince(eraseStart), peakRSSMiB: peakResidentMiB())
        var meta: [String: String] = [
            MaskFile.Key.concept: o.concepts.map(\.name).joined(separator: ","), "method": o.method.rawValue,
            "objective": o.method == .esd ? "ESD negative guidance, eta \(q.eta)" : "\(o.method == .perStep ? "per-step velocity" : "final-sample") MSE, target \(o.target)",
            "beta": "\(o.beta)", "target": o.target.description, "steps": "\(steps)", "guidance": "\(q.guidance)", "iterations": "\(o.iterations)",
            "sites": o.sites.map(\.description).joined(separator: ","), "seed": "\(q.seed)",
            "options": try metadataJSON(o),
            "base_model": q.model, MaskFile.Key.modelHash: try modelHash(q.model),
        ]
        var erased: ErasedModel
        var masked = 0, total = 0, counts: [(site: String, masked: Int, total: Int)] = []
        if o.method.learnsMasks {
            // Binary masks, mask file, baked checkpoint.
            meta["binarisation"] = binarisation.description
            meta["relaxation"] = o.relaxation.name
            meta["format"] = MaskFile.format
            let perRun = runs.enumerated().filter { kept == nil || $0.offset == kept }.map { r, run -> MaskFile in
                var m = meta; m["seed"] = "\(o.restart(r).seed)"
                return MaskFile(logits: run.logits, masks: run.binary!, fill: run.fill, metadata: m)
            }
            let file = perRun.count == 1 ? perRun[0] : try MaskFile.average(perRun, binarisation: binarisation)
            let maskPath = (out as NSString).appendingPathComponent("masks.safetensors")
            try file.write(to: maskPath)
            // The baked checkpoint keeps the input's layout: a folder for a folder, one file for a file.
            var isDir: ObjCBool = false
            let modelIsFolder = fm.fileExists(atPath: q.model, isDirectory: &isDir) && isDir.boolValue
            let baked = (out as NSString).appendingPathComponent(modelIsFolder ? "model" : "model.safetensors")
            try Baker.bake(model: q.model, masks: file, to: baked,
                           extraMetadata: ["mce_masks": meta[MaskFile.Key.concept]!, "mce_base_model_sha256": meta[MaskFile.Key.modelHash]!])
            counts = file.allMaskedCounts
            masked = counts.map(\.masked).reduce(0, +); total = counts.map(\.total).reduce(0, +)
            output.say("masks: \(maskPath)\nbaked checkpoint: \(baked)")
            if !file.textMasks.isEmpty {
                // The erased text encoder, for any BERT runtime (the transformer checkpoint is erased only
                // at its own sites; the two belong together).
                let te = (out as NSString).appendingPathComponent("text_encoder")
                try TextEncoderBaker.bake(source: encoder.miniLM.directory, masks: file.textMasks, fill: file.textFill, to: te)
                output.say("baked text encoder: \(te) (use it with the baked checkpoint: MCE_MINILM=\(te))")
            }
            output.say(String(format: "masked %d of %d units (%.2f%%)", masked, total, 100 * Double(masked) / Double(max(1, total))))
            for c in counts where c.masked > 0 { output.say("  \(c.site): \(c.masked)/\(c.total)") }
            erased = ErasedModel(name: "erased", source: maskPath, masks: file.maskSet(), maskFile: file,
                                 encoder: try file.textEncoder(base: encoder), eraseSeconds: cost.eraseSeconds, peakRSSMiB: cost.peakRSSMiB)
        } else {
            // A weight method: the fine-tuned model itself, in the diffusers layout (F32: small updates survive).
            let folder = (out as NSString).appendingPathComponent("model")
            var m: [String: String] = [:]
            for (k, v) in meta where k != "options" { m["mce_\(k)"] = v }
            try eraser.trained.weights.writeDiffusersFolder(folder, metadata: m, dtype: .F32)
            output.say("fine-tuned checkpoint (\(eraser.trainable.count) tensors trained): \(folder)")
            erased = ErasedModel(name: "erased", source: folder, model: eraser.trained,
                                 eraseSeconds: cost.eraseSeconds, peakRSSMiB: cost.peakRSSMiB)
        }

        // Measure it with the pinned protocol (as `mce evaluate`), plus the prompts erasure trained on.
        var evaluation: EvaluationReport?
        if q.evalPrompts > 0, let judge, o.concepts.contains(where: { $0.classID != nil }) {
            var p = EvaluationProtocol()
            p.samples = q.evalPrompts; p.perClass = q.evalPerClass; p.seed = q.seed; p.samplingSteps = steps; p.guidance = q.guidance
            let trained = items.filter { $0.isConcept && $0.classID != nil }.map {
                EvaluationPrompt(text: $0.prompt, seed: $0.seed, classID: $0.classID!, objColor: $0.objColor ?? -1, bgColor: $0.bgColor ?? -1)
            }
            let classConcepts = o.concepts.filter { $0.classID != nil }
            let total = Evaluator.sampleCount(concepts: classConcepts, classCount: subject.classNames.count, erasedModels: 1,
                                              extraPrompts: trained.count, protocol: p) * steps
            let bar = output.progress("evaluate", total, 0)
            let result = try Evaluator.run(subject: subject, baseName: q.model, erased: [erased], concepts: classConcepts, judge: judge,
                                           protocol: p, extraConceptSets: [("erase training prompts", trained)]) { label, done, _ in
                bar(min(done, total), label)
            }
            let files = try ReportWriter.write(result.report, samples: result.samples, to: (out as NSString).appendingPathComponent("evaluation"))
            evaluation = result.report
            for line in result.report.summaryLines { output.say(line) }
            output.say("evaluation report: \(files.html)")
        } else {
            output.log("no evaluation (needs a concept the judge knows, the detector and --eval-prompts > 0)")
        }
        let summary = EraseSummary(options: o, history: runs.flatMap(\.history), cost: cost, maskedUnits: masked, totalUnits: total,
                                   maskedPerSite: Dictionary(uniqueKeysWithValues: counts.map { ($0.site, $0.masked) }),
                                   evaluation: evaluation, checks: runs.compactMap(\.check), keptRun: kept)
        try Self.writeJSON(summary, to: (out as NSString).appendingPathComponent("report.json"))
        output.say(String(format: "erasing took %.0f s, peak memory %.0f MiB", cost.eraseSeconds, cost.peakRSSMiB))
        output.say("summary: \((out as NSString).appendingPathComponent("report.json"))")
        return summary
    }

    /// Pretty-printed, keys sorted (the same run writes the same bytes), written atomically.
    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// One line per training check, and the broken prompts (worst first).
    static func describe(_ c: TrainingCheck, binarisation: Binarisation) -> String {
        var s = String(format: "training check (seed %llu, masks binarised at %@): erase %.4f, preserve %.5f", c.seed, binarisation.description, c.erase, c.preserve)
        if let t = c.textPreserve { s += String(format: ", text %.5f", t) }
        s += String(format: ", objective %.5f; %d of %d training prompts broken (error above %.4f)", c.objective, c.brokenCount, c.items.count, c.brokenAbove)
        for item in c.items.filter(\.broken).sorted(by: { $0.loss > $1.loss }) {
            s += String(format: "\n  %@ '%@': %.4f", item.isConcept ? "concept" : "neutral", item.prompt, item.loss)
            if item.isConcept { s += String(format: " (%.4f before erasing)", item.before) }
        }
        return s
    }
}
