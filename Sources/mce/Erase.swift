import ArgumentParser
import BaseModel
import Detector
import Erasure
import Evaluation
import Flux
import Foundation
import SafeTensors
import TextEncoder
import World

struct Erase: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Erases concepts: learns neuron masks end to end through the sampler, binarises them and bakes them into a checkpoint.",
        discussion: """
        Writes OUT/masks.safetensors (logits and binary masks per site), OUT/model (the baked checkpoint, in the \
        input's layout), OUT/report.json (options, loss history, cost, units masked, measurements) and \
        OUT/evaluation/ (the `mce evaluate` report of the erased model: report.html, PNG grids). \
        OUT/state.safetensors holds the logits and optimiser state every --checkpoint-every iterations; \
        --resume continues from it.
        """)

    @Option(name: .long, help: "Concept to erase (repeatable). A world class or synonym erases the class under all its names.")
    var concept: [String] = []
    @Option(name: .long, help: "Extra phrase naming the concept (repeatable).") var synonym: [String] = []
    @Option(help: "Model to erase from.") var model: String = BaseModelSpec.defaultModelPath
    @Option(help: "What is learned: mask (neuron masks, end-to-end loss; the product's method), per-step (masks, per-step loss), finetune (the mask sites' layer weights, end-to-end loss) or esd (ESD-style fine-tuning of the text-stream q/k/v).")
    var method: String = "mask"
    @Option(help: "ESD's negative-guidance strength η (--method esd).") var eta: Double = 1
    @Option(help: "Target of concept prompts: null (empty prompt), deconcept (concept phrase → \"object\"), nearest (the world class whose name the text encoder puts nearest the concept's, as an anchor) or an anchor phrase. Default: nearest for the mask method and one concept, deconcept otherwise.")
    var target: String?
    @Option(help: "Weight β of the preservation term (default 0.3 for the mask method, 1 for the others).") var beta: Double?
    @Option(help: "Sampling steps N the loss backpropagates through.") var steps: Int = 20
    @Option(help: "Classifier-free guidance scale of the sampler (1 = off); the base model is sampled at 3.") var guidance: Double = BaseModelSpec.defaultGuidance
    @Option(help: ArgumentHelp("Mask sites: kinds (\(MaskSite.Kind.allCases.map(\.rawValue).joined(separator: ", ")); \(TextEncoderSite.kind): the text encoder's feed-forward units, mask method only) or names, comma-separated. Default: \(ErasureMethod.mask.defaultSiteKinds.joined(separator: ",")) (the authors' sites and the text encoder's units); \(ErasureOptions.authorsSiteKinds.joined(separator: ",")) for the other methods."))
    var sites: String?
    @Option(help: "Optimiser steps (default 60; 200 for esd).") var iterations: Int?
    @Option(help: "Passes over the prompts (alternative to --iterations).") var epochs: Int?
    @Option(help: "The last K optimiser steps run the binarised masks (straight-through gradient), so the objective decides the units near the threshold (0: none, the authors').") var binaryFinish: Int = 0
    @Option(help: "Prompts per optimiser step.") var batch: Int = 4
    @Option(help: "AdamW learning rate (default 0.5 on mask logits, 1e-4 for finetune and esd).") var lr: Double?
    @Option(help: "Learning rate after the 5-step warm-up: constant (the authors') or cosine (decays to 0 at the last iteration).")
    var lrSchedule: String = "constant"
    @Option(help: "AdamW's ε (default 1e-8, PyTorch's and the authors'). Larger values (1e-6–1e-5) move only the mask logits with large gradients: smaller masks.")
    var adamEps: Double?
    @Option(help: "With text-encoder sites: weight γ of an extra term that keeps the text encoder's outputs, as the transformer reads them, for --text-preserve-prompts neutral captions and for the null prompt, which weighs as much as all captions together (0: none, the authors' objective; default \(ErasureOptions.defaultTextPreserve.formatted()) when text-encoder sites are masked).")
    var textPreserve: Double?
    @Option(help: "Neutral captions of the --text-preserve term (default 200).") var textPreservePrompts: Int?
    @Option(help: "With text-encoder sites: weight κ of a price on each closed text-encoder unit, κ times what closing it alone changes the --text-preserve captions' outputs by (estimated once); a unit then closes only where the concept outweighs its price (0: none).")
    var unitCost: Double = 0
    @Option(help: "With text-encoder sites: what a closed text-encoder unit emits: zero (the authors' masking) or mean (its mean output over the --text-preserve captions, folded into the baked encoder's bias).")
    var textAblation: String = "zero"
    @Option(help: "Mask relaxation: hard-concrete or sigmoid.") var relaxation: String = "hard-concrete"
    @Option(help: "Binarisation: threshold[:T] (keep λ > T), top-site:F or top-global:F (default threshold:\(ErasureOptions.defaultTextThreshold.formatted()) when text-encoder sites are masked, else threshold:0, the authors').")
    var binarise: String?
    @Option(help: "Concept prompts generated per concept.") var conceptPrompts: Int = 20
    @Option(help: "Neutral prompts generated.") var neutralPrompts: Int = 20
    @Option(help: "Concept prompts from a file (one per line) instead.") var prompts: String?
    @Option(help: "Neutral prompts from a file (one per line).") var neutral: String?
    @Flag(help: "New noise for every epoch (default: one fixed x_T per prompt, as the authors).") var freshNoise = false
    @Flag(help: "Drop concept prompts whose original sample the detector does not read as the concept.") var filter = false
    @Option(help: "Random seed (prompts, noise, mask draws).") var seed: UInt64 = 0
    @Option(help: "Independent training runs (seeds --seed, --seed + 1, …) whose mean mask logits are binarised: a unit closes only where the runs agree, so fewer units are closed by one run's noise (K times the training time).")
    var restarts: Int = 1
    @Option(help: "Mask methods with one run: when the training check finds training prompts that the binarised mask breaks (see --broken-factor), train again with the next seed, up to this many times, and keep the run with the fewest broken prompts (then the lowest objective). 0: never.")
    var retries: Int = 1
    @Option(help: "The training check calls a prompt broken when its final error exceeds this factor times the concept prompts' mean distance to their targets before erasing.")
    var brokenFactor: Double = 1
    @Option(help: "Output folder.") var out: String = "out/erase"
    @Flag(help: "Continue from OUT/state.safetensors.") var resume = false
    @Option(help: "Iterations between state checkpoints.") var checkpointEvery: Int = 10
    @Option(help: "Prompts per concept set of the evaluation afterwards (`mce evaluate`'s protocol; 0 = no evaluation).") var evalPrompts: Int = EvaluationProtocol().samples
    @Option(help: "Neutral prompts per other class in that evaluation (the protocol's 4; 16 measures neutral accuracy about twice as precisely).") var evalPerClass: Int = EvaluationProtocol().perClass
    @Option(help: "Detector weights for the filter and the evaluation.") var detector: String = SceneDetector.defaultPath

    func validate() throws {
        if concept.isEmpty { throw ValidationError("give at least one --concept") }
        if steps < 1 { throw ValidationError("--steps (sampling steps N) must be ≥ 1, got \(steps)") }
        if let beta, !(beta >= 0) { throw ValidationError("--beta must be ≥ 0, got \(beta)") }
        if batch < 1 || checkpointEvery < 1 || evalPrompts < 0 || evalPerClass < 1 {
            throw ValidationError("--batch, --checkpoint-every and --eval-per-class must be ≥ 1, --eval-prompts ≥ 0")
        }
        if let i = iterations, i < 1 { throw ValidationError("--iterations must be ≥ 1") }
        if restarts < 1 { throw ValidationError("--restarts must be ≥ 1, got \(restarts)") }
        if retries < 0 { throw ValidationError("--retries must be ≥ 0, got \(retries)") }
        if !(brokenFactor >= 0 && brokenFactor.isFinite) { throw ValidationError("--broken-factor must be ≥ 0 and finite, got \(brokenFactor)") }
        if let e = epochs, e < 1 { throw ValidationError("--epochs must be ≥ 1") }
        if iterations != nil && epochs != nil { throw ValidationError("give --iterations or --epochs, not both") }
        if let lr, !(lr > 0) { throw ValidationError("--lr must be > 0") }
        if let adamEps, !(adamEps > 0 && adamEps.isFinite) { throw ValidationError("--adam-eps must be > 0 and finite, got \(adamEps)") }
        if let textPreserve, !(textPreserve >= 0 && textPreserve.isFinite) { throw ValidationError("--text-preserve must be ≥ 0 and finite, got \(textPreserve)") }
        if let textPreservePrompts, textPreservePrompts < 1 { throw ValidationError("--text-preserve-prompts must be ≥ 1") }
        if !(unitCost >= 0 && unitCost.isFinite) { throw ValidationError("--unit-cost must be ≥ 0 and finite, got \(unitCost)") }
        if !eta.isFinite { throw ValidationError("--eta must be finite") }
        if let beta, !beta.isFinite { throw ValidationError("--beta must be finite, got \(beta)") }
        try checkGuidance(guidance)
        // At guidance 0 the sampler follows the empty prompt only: every prompt gives the same sample, so the
        // loss is 0 and nothing can be erased.
        if guidance == 0 { throw ValidationError("--guidance 0 samples the empty prompt only, so there is nothing to erase; use 1 (off) or more") }
    }

    func run() throws {
        try reportingErrors {
            let fm = FileManager.default
            try prepareOutputFolder(out)
            let loader = try FluxWeightLoader(path: model)
            let transformer = FluxTransformer(weights: try loader.load(as: Float.self))
            let cfg = transformer.config
            let encoder = try PromptEncoder()
            var o = ErasureOptions()
            o.method = try ErasureMethod.parse(method)
            o.esdEta = eta
            o.concepts = try concept.map { try ConceptSpec.resolve($0, synonyms: synonym) }
            let target = self.target ?? o.method.defaultTarget(concepts: o.concepts.count)
            let beta = self.beta ?? o.method.defaultBeta
            let resolved = try ErasureTarget.resolve(target, concepts: o.concepts, encoder: encoder.miniLM)
            if let near = resolved.nearest {
                log(String(format: "target: the nearest class to '%@' is '%@' (cosine %.3f)", o.concepts[0].name, near.name, near.similarity))
            }
            o.target = resolved.target
            o.beta = beta; o.samplingSteps = steps; o.guidance = guidance
            o.sites = try ErasureOptions.expandSites([sites ?? o.method.defaultSiteKinds.joined(separator: ",")], config: cfg,
                                                     textEncoderLayers: encoder.miniLM.layerCount)
            o.relaxation = try MaskRelaxation.named(relaxation)
            o.lr = lr ?? o.method.defaultLearningRate; o.batch = batch; o.freshNoise = freshNoise; o.seed = seed
            o.adamEps = adamEps
            guard let schedule = ErasureOptions.LRSchedule(rawValue: lrSchedule) else {
                throw CLIError("--lr-schedule must be constant or cosine, got '\(lrSchedule)'")
            }
            o.lrSchedule = schedule == .constant ? nil : schedule
            if (textPreserve ?? 0) > 0 && o.textEncoderLayers.isEmpty { throw CLIError("--text-preserve needs text-encoder sites (--sites …,text_ff)") }
            // With text-encoder sites the term is on unless switched off (--text-preserve 0: the authors' objective).
            let gamma = textPreserve ?? (o.textEncoderLayers.isEmpty ? 0 : ErasureOptions.defaultTextPreserve)
            o.textPreserve = gamma > 0 ? gamma : nil; o.textPreservePrompts = textPreservePrompts
            if unitCost > 0 && o.textEncoderLayers.isEmpty { throw CLIError("--unit-cost needs text-encoder sites (--sites …,text_ff)") }
            o.unitCost = unitCost > 0 ? unitCost : nil
            guard let ablation = ErasureOptions.TextAblation(rawValue: textAblation) else {
                throw CLIError("--text-ablation must be zero or mean, got '\(textAblation)'")
            }
            if ablation == .mean && o.textEncoderLayers.isEmpty { throw CLIError("--text-ablation mean needs text-encoder sites (--sites …,text_ff)") }
            o.textAblation = ablation == .zero ? nil : ablation
            let binarisation = try binarise.map(Binarisation.parse)
                ?? ErasureOptions.defaultBinarisation(textEncoderSites: !o.textEncoderLayers.isEmpty)
            if binaryFinish != 0 {
                guard o.method.learnsMasks else { throw CLIError("--binary-finish is for mask methods, not \(o.method.rawValue)") }
                guard case .threshold(let t) = binarisation else { throw CLIError("--binary-finish needs --binarise threshold[:T], not \(binarisation)") }
                o.binaryFinish = binaryFinish; o.finishThreshold = t == 0 ? nil : t
            }

            if restarts > 1 {
                guard o.method.learnsMasks else { throw CLIError("--restarts is for mask methods (their runs' mask logits are averaged), not \(o.method.rawValue)") }
                o.restarts = restarts
            }
            let detectorModel: SceneDetector? = fm.fileExists(atPath: detector) ? try SceneDetector(path: detector) : nil
            /// The training prompts of the run with seed `s`: generated or from files, then the optional filter.
            func trainingItems(seed s: UInt64) throws -> [ErasureItem] {
                var items: [ErasureItem]
                if let file = prompts {
                    items = try ErasurePrompts.files(conceptFile: file, neutralFile: neutral, concepts: o.concepts, target: o.target, seed: s)
                } else {
                    if neutral != nil { throw CLIError("--neutral needs --prompts (generated prompts include their own neutral set)") }
                    items = try ErasurePrompts.world(concepts: o.concepts, conceptCount: conceptPrompts, neutralCount: neutralPrompts,
                                                     target: o.target, seed: s)
                }
                for it in items {   // refuse unknown words before any work
                    _ = try encoder.encode(it.prompt)
                    if !it.targetPrompt.isEmpty { _ = try encoder.encode(it.targetPrompt) }
                }
                if filter {
                    guard let det = detectorModel else { throw CLIError("--filter needs the detector (\(detector) not found)") }
                    let gen = Generator(model: transformer, encoder: encoder, steps: steps, guidanceScale: guidance)
                    let concepts = items.filter(\.isConcept)
                    let imgs = try gen.images(prompts: concepts.map(\.prompt), seeds: concepts.map(\.seed))
                    let keep = zip(concepts, det.predict(imgs)).filter { $0.0.classID == nil || $0.1.classID == $0.0.classID }.map(\.0.prompt)
                    log("filter: \(keep.count) of \(concepts.count) concept prompts show the concept")
                    guard !keep.isEmpty else { throw CLIError("--filter: no concept prompt's original sample shows the concept") }
                    items = items.filter { !$0.isConcept || keep.contains($0.prompt) }
                }
                return items
            }

            // One training run per restart (one by default), and with one restart a retry with the next seed while
            // the training check finds broken prompts; each run keeps its own state file for --resume.
            struct Run {
                let items: [ErasureItem]; let logits: [MaskSite: [Float]]; let textLogits: [Int: [Float]]; let textFill: [Int: [Float]]
                let history: [ErasureStepLog]
                /// Mask methods: the run's binarised masks (checked, then written when the run is kept) and its check.
                let binary: (masks: [MaskSite: [Float]], text: [Int: [Float]])?; let check: TrainingCheck?
            }
            var runs: [Run] = []
            var lastEraser: Eraser?
            let eraseStart = Date()
            let maxRuns = restarts > 1 || !o.method.learnsMasks ? restarts : 1 + retries
            for r in 0..<maxRuns {
                let runOptions = o.restart(r)
                let items = try trainingItems(seed: runOptions.seed)
                if r == 0 {
                    let poolSize = o.method == .esd ? items.filter(\.isConcept).count : items.count
                    o.iterations = iterations ?? ((epochs ?? 0) > 0 ? max(1, (epochs! * poolSize + batch - 1) / batch) : o.method.defaultIterations)
                }
                var ro = runOptions; ro.iterations = o.iterations
                let eraser = try Eraser(model: transformer, encoder: encoder, items: items, options: ro)
                let statePath = (out as NSString).appendingPathComponent(r == 0 ? "state.safetensors" : "state-\(r + 1).safetensors")
                if resume {
                    if fm.fileExists(atPath: statePath) {
                        try eraser.loadState(from: statePath)
                        log("\(restarts > 1 ? "run \(r + 1): " : "")resumed at iteration \(eraser.iteration)")
                    } else if r == 0 {
                        throw CLIError("--resume: no state at \(statePath)")
                    }
                }
                if o.effectiveUnitCost > 0 {
                    let t0 = Date()
                    let w = try eraser.textUnitCosts().values.flatMap { $0 }.sorted()
                    log(String(format: "unit costs of %d text-encoder units in %.1f s: median %.3g, 90th percentile %.3g, largest %.3g (×κ %g)",
                               w.count, Date().timeIntervalSince(t0), w[w.count / 2], w[w.count * 9 / 10], w.last!, o.effectiveUnitCost))
                }
                let nc = items.filter(\.isConcept).count
                let which = restarts > 1 ? " run \(r + 1) of \(restarts) (seed \(ro.seed))" : ""
                log("erasing \(o.concepts.map(\.name).joined(separator: ", ")) (method \(o.method.rawValue))\(which): \(nc) concept + \(items.count - nc) neutral prompts, target \(o.target), β \(beta), N \(steps), guidance \(guidance), \(eraser.sites.count + eraser.textLayers.count) sites (\(eraser.sites.map { $0.width(cfg) }.reduce(0, +) + eraser.textLayers.count * encoder.miniLM.intermediateSize) units), \(o.iterations) iterations")
                let tp = Progress(total: eraser.pool.count * steps, label: "targets")
                try eraser.prepareTargets { d, _ in tp.update(d) }
                let bar = Progress(total: o.iterations, label: restarts > 1 ? "erase \(r + 1)/\(restarts)" : "erase", initial: eraser.iteration)
                while eraser.iteration < o.iterations {
                    let l = try eraser.step()
                    let text = (l.textPreserveLoss.map { String(format: "  text %.5f", $0) } ?? "")
                        + (l.unitCostLoss.map { String(format: "  units %.5f", $0) } ?? "")
                    bar.update(eraser.iteration, extra: String(format: "erase %.4f  preserve %.5f", l.eraseLoss, l.preserveLoss) + text + "  masked \(l.expectedMasked)")
                    if eraser.iteration % checkpointEvery == 0 || eraser.iteration == o.iterations { try eraser.saveState(to: statePath) }
                }
                var binary: (masks: [MaskSite: [Float]], text: [Int: [Float]])?, check: TrainingCheck?
                if o.method.learnsMasks {
                    let b = binarisation.apply(eraser.logitArrays, text: eraser.textLogitArrays)
                    let cp = Progress(total: (items.count + nc) * steps, label: "check")
                    let c = try eraser.check(masks: b.masks, textMasks: b.text, brokenFactor: brokenFactor) { d, _ in cp.update(d) }
                    log(describe(c, binarisation: binarisation))
                    binary = b; check = c
                }
                runs.append(Run(items: items, logits: eraser.logitArrays, textLogits: eraser.textLogitArrays, textFill: eraser.textFill,
                                history: eraser.history, binary: binary, check: check))
                lastEraser = eraser
                if restarts == 1, let c = check {
                    if c.brokenCount == 0 { break }
                    if r + 1 < maxRuns { log("training check: \(c.brokenCount) broken prompts; training again with seed \(o.restart(r + 1).seed) (--retries \(retries))") }
                }
            }
            // With one restart, the run the training check prefers; with several, all of them (averaged below).
            let kept = restarts > 1 ? nil : runs.indices.min { a, b in
                guard let ca = runs[a].check, let cb = runs[b].check else { return false }
                return ca.isBetter(than: cb)
            }
            if let k = kept, runs.count > 1 {
                log("keeping run \(k + 1) of \(runs.count) (seed \(o.restart(k).seed)): \(runs[k].check!.brokenCount) broken prompts, objective \(String(format: "%.5f", runs[k].check!.objective))")
            }
            let eraser = lastEraser!
            let items = kept.map { runs[$0].items } ?? runs.flatMap(\.items)

            let cost = ErasureCost(eraseSeconds: Date().timeIntervalSince(eraseStart), peakRSSMiB: ErasureCost.peakRSSMiB())
            var meta: [String: String] = [
                "concept": o.concepts.map(\.name).joined(separator: ","), "method": o.method.rawValue,
                "objective": o.method == .esd ? "ESD negative guidance, eta \(eta)" : "\(o.method == .perStep ? "per-step velocity" : "final-sample") MSE, target \(o.target)",
                "beta": "\(beta)", "target": o.target.description, "steps": "\(steps)", "guidance": "\(guidance)", "iterations": "\(o.iterations)",
                "sites": o.sites.joined(separator: ","), "seed": "\(seed)",
                "options": try metadataJSON(o),
                "base_model": model, "base_model_sha256": try modelHash(model),
            ]
            var run: ErasedModel
            var masked = 0, total = 0, counts: [(site: String, masked: Int, total: Int)] = []
            if o.method.learnsMasks {
                // Binary masks, mask file, baked checkpoint.
                meta["binarisation"] = binarisation.description
                meta["relaxation"] = o.relaxation.name
                meta["format"] = "mce-masks-1"
                let perRun = runs.enumerated().filter { kept == nil || $0.offset == kept }.map { r, run -> MaskFile in
                    let binary = run.binary!
                    var m = meta; m["seed"] = "\(o.restart(r).seed)"
                    var f = MaskFile(logits: run.logits, masks: binary.masks, textLogits: run.textLogits, textMasks: binary.text, metadata: m)
                    f.textFill = run.textFill
                    return f
                }
                let file = perRun.count == 1 ? perRun[0] : try MaskFile.average(perRun, binarisation: binarisation)
                let maskPath = (out as NSString).appendingPathComponent("masks.safetensors")
                try file.write(to: maskPath)
                // The baked checkpoint keeps the input's layout: a folder for a folder, one file for a file.
                var isDir: ObjCBool = false
                let modelIsFolder = fm.fileExists(atPath: model, isDirectory: &isDir) && isDir.boolValue
                let baked = (out as NSString).appendingPathComponent(modelIsFolder ? "model" : "model.safetensors")
                try Baker.bake(model: model, masks: file, to: baked, extraMetadata: ["mce_masks": meta["concept"]!, "mce_base_model_sha256": meta["base_model_sha256"]!])
                counts = file.allMaskedCounts
                masked = counts.map(\.masked).reduce(0, +); total = counts.map(\.total).reduce(0, +)
                print("masks: \(maskPath)\nbaked checkpoint: \(baked)")
                if !file.textMasks.isEmpty {
                    // The erased text encoder, for any BERT runtime (the transformer checkpoint is erased only
                    // at its own sites; the two belong together).
                    let te = (out as NSString).appendingPathComponent("text_encoder")
                    try TextEncoderBaker.bake(source: encoder.miniLM.directory, masks: file.textMasks, fill: file.textFill, to: te)
                    print("baked text encoder: \(te) (use it with the baked checkpoint: MCE_MINILM=\(te))")
                }
                print(String(format: "masked %d of %d units (%.2f%%)", masked, total, 100 * Double(masked) / Double(max(1, total))))
                for c in counts where c.masked > 0 { print("  \(c.site): \(c.masked)/\(c.total)") }
                run = ErasedModel(name: "erased", source: maskPath, masks: file.maskSet(), maskFile: file,
                                  encoder: try file.textEncoder(base: encoder), eraseSeconds: cost.eraseSeconds, peakRSSMiB: cost.peakRSSMiB)
            } else {
                // A weight method: the fine-tuned model itself, in the diffusers layout (F32: small updates survive).
                let folder = (out as NSString).appendingPathComponent("model")
                var m: [String: String] = [:]
                for (k, v) in meta where k != "options" { m["mce_\(k)"] = v }
                try eraser.trained.weights.writeDiffusersFolder(folder, metadata: m, dtype: .F32)
                print("fine-tuned checkpoint (\(eraser.trainable.count) tensors trained): \(folder)")
                run = ErasedModel(name: "erased", source: folder, model: eraser.trained,
                                  eraseSeconds: cost.eraseSeconds, peakRSSMiB: cost.peakRSSMiB)
            }

            // Measure it with the pinned protocol (as `mce evaluate`), plus the prompts erasure trained on.
            struct Summary: Codable {
                let options: ErasureOptions; let history: [ErasureStepLog]; let cost: ErasureCost
                let maskedUnits: Int; let totalUnits: Int; let maskedPerSite: [String: Int]
                let evaluation: EvaluationReport?
                /// The training check of every run (in order), and the run kept (nil: the runs were averaged).
                let checks: [TrainingCheck]; let keptRun: Int?
            }
            var evaluation: EvaluationReport?
            if evalPrompts > 0, let det = detectorModel, o.concepts.contains(where: { $0.classID != nil }) {
                var p = EvaluationProtocol()
                p.samples = evalPrompts; p.perClass = evalPerClass; p.seed = seed; p.samplingSteps = steps; p.guidance = guidance
                let trained = items.filter { $0.isConcept && $0.classID != nil }.map {
                    EvaluationPrompt(text: $0.prompt, seed: $0.seed, classID: $0.classID!, objColor: $0.objColor ?? -1, bgColor: $0.bgColor ?? -1)
                }
                let worldConcepts = o.concepts.filter { $0.classID != nil }
                let total = Evaluator.sampleCount(concepts: worldConcepts, erasedModels: 1, extraPrompts: trained.count, protocol: p) * steps
                let bar = Progress(total: total, label: "evaluate")
                let result = try Evaluator.run(base: transformer, baseName: model, erased: [run], concepts: worldConcepts, encoder: encoder,
                                               detector: det, protocol: p, extraConceptSets: [("erase training prompts", trained)]) { label, done, _ in
                    bar.update(min(done, total), extra: label)
                }
                let files = try ReportWriter.write(result.report, samples: result.samples, to: (out as NSString).appendingPathComponent("evaluation"))
                evaluation = result.report
                printSummary(result.report)
                print("evaluation report: \(files.html)")
            } else {
                log("no evaluation (needs a world concept, the detector and --eval-prompts > 0)")
            }
            try writeReport(Summary(options: o, history: runs.flatMap(\.history), cost: cost, maskedUnits: masked, totalUnits: total,
                                    maskedPerSite: Dictionary(uniqueKeysWithValues: counts.map { ($0.site, $0.masked) }),
                                    evaluation: evaluation, checks: runs.compactMap(\.check), keptRun: kept),
                            to: (out as NSString).appendingPathComponent("report.json"))
            print(String(format: "erasing took %.0f s, peak memory %.0f MiB", cost.eraseSeconds, cost.peakRSSMiB))
            print("summary: \((out as NSString).appendingPathComponent("report.json"))")
        }
    }
}

/// One line per training check, and the broken prompts (worst first).
private func describe(_ c: TrainingCheck, binarisation: Binarisation) -> String {
    var s = String(format: "training check (seed %llu, masks binarised at %@): erase %.4f, preserve %.5f", c.seed, binarisation.description, c.erase, c.preserve)
    if let t = c.textPreserve { s += String(format: ", text %.5f", t) }
    s += String(format: ", objective %.5f; %d of %d training prompts broken (error above %.4f)", c.objective, c.brokenCount, c.items.count, c.brokenAbove)
    for item in c.items.filter(\.broken).sorted(by: { $0.loss > $1.loss }) {
        s += String(format: "\n  %@ '%@': %.4f", item.isConcept ? "concept" : "neutral", item.prompt, item.loss)
        if item.isConcept { s += String(format: " (%.4f before erasing)", item.before) }
    }
    return s
}

struct Masks: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mask files: merge several (concepts), average several (seeds), or bake one into a checkpoint.",
                                                    subcommands: [Merge.self, Average.self, Bake.self])

    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Combines mask files: a unit is kept only if every file keeps it.")
        @Argument(help: "Mask files.") var files: [String] = []
        @Option(help: "Output mask file.") var out: String
        func validate() throws { if files.count < 2 { throw ValidationError("give at least two mask files") } }
        func run() throws {
            try reportingErrors {
                let merged = try MaskFile.merge(try files.map { try MaskFile.read($0) })
                try merged.write(to: out)
                let c = merged.maskedCounts
                print("\(out): \(c.map(\.masked).reduce(0, +)) of \(c.map(\.total).reduce(0, +)) units masked")
            }
        }
    }

    struct Average: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Combines training runs of one erasure (other seeds): binarises the mean of their logits.",
            discussion: "A unit only one run removed is kept; one every run pushes down is removed. `mce erase --restarts K` does this itself. With one file: that file binarised again by --binarise.")
        @Argument(help: "Mask files written by `mce erase` (with logits).") var files: [String] = []
        @Option(help: "Output mask file.") var out: String
        @Option(help: "Binarisation of the mean logits: threshold[:T], top-site:F or top-global:F.") var binarise: String = "threshold:0"
        func validate() throws { if files.isEmpty { throw ValidationError("give at least one mask file") } }
        func run() throws {
            try reportingErrors {
                let averaged = try MaskFile.average(try files.map { try MaskFile.read($0) }, binarisation: try Binarisation.parse(binarise))
                try averaged.write(to: out)
                let c = averaged.allMaskedCounts
                print("\(out): \(c.map(\.masked).reduce(0, +)) of \(c.map(\.total).reduce(0, +)) units masked")
            }
        }
    }

    struct Bake: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Folds a mask file's binary masks into a checkpoint (same layout as the input).")
        @Option(help: "Mask file.") var masks: String
        @Option(help: "Model to bake into.") var model: String = BaseModelSpec.defaultModelPath
        @Option(help: "Output (folder for a folder model, file for a single-file model).") var out: String
        @Option(help: "Where the erased text encoder goes when the mask file has text-encoder sites (default: text_encoder beside --out, where `mce evaluate --erased OUT` looks for it).")
        var textEncoderOut: String?
        func run() throws {
            try reportingErrors {
                let loader = try FluxWeightLoader(path: model)
                let file = try MaskFile.read(masks, config: loader.config)
                try Baker.bake(model: model, masks: file, to: out)
                print("baked \(masks) into \(out)")
                if !file.textMasks.isEmpty {
                    let te = textEncoderOut ?? ((out as NSString).deletingLastPathComponent as NSString).appendingPathComponent("text_encoder")
                    try TextEncoderBaker.bake(source: MiniLM.defaultDirectory(), masks: file.textMasks, fill: file.textFill, to: te)
                    print("baked its text-encoder masks into \(te)")
                }
            }
        }
    }
}
