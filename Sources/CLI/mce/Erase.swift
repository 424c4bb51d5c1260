import ArgumentParser
import Jobs
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

    @OptionGroup var precisionOption: PrecisionOption

    @Option(name: .long, help: "Concept to erase (repeatable). A world class or synonym erases the class under all its names.")
    var concept: [String] = []
    @Option(name: .long, help: "Extra phrase naming the concept (repeatable).") var synonym: [String] = []
    @Option(help: "Model to erase from.") var model: String = BaseModelSpec.defaultModelPath
    @Option(help: "What is learned: mask (neuron masks, end-to-end loss; the product's method), per-step (masks, per-step loss), finetune (the mask sites' layer weights, end-to-end loss) or esd (ESD-style fine-tuning of the text-stream q/k/v).")
    var method: String = EraseRequest.defaults.method
    @Option(help: "ESD's negative-guidance strength η (--method esd).") var eta: Double = EraseRequest.defaults.eta
    @Option(help: "Target of concept prompts: null (empty prompt), deconcept (concept phrase → \"object\"), nearest (the world class whose name the text encoder puts nearest the concept's, as an anchor) or an anchor phrase. Default: nearest for the mask method and one concept, deconcept otherwise.")
    var target: String?
    @Option(help: "Weight β of the preservation term (default 0.3 for the mask method, 1 for the others).") var beta: Double?
    @Option(help: "Sampling steps N the loss backpropagates through.") var steps: Int = EraseRequest.defaults.steps
    @Option(help: "Classifier-free guidance scale of the sampler (1 = off); the base model is sampled at 3.") var guidance: Double = EraseRequest.defaults.guidance
    @Option(help: ArgumentHelp("Mask sites: kinds (\(MaskSite.Kind.allCases.map(\.rawValue).joined(separator: ", ")); \(TextEncoderSite.kind): the text encoder's feed-forward units, mask method only) or names, comma-separated. Default: \(ErasureMethod.mask.defaultSiteKinds.joined(separator: ",")) (the authors' sites and the text encoder's units); \(ErasureOptions.authorsSiteKinds.joined(separator: ",")) for the other methods."))
    var sites: String?
    @Option(help: "Optimiser steps (default 60; 200 for esd).") var iterations: Int?
    @Option(help: "Passes over the prompts (alternative to --iterations).") var epochs: Int?
    @Option(help: "The last K optimiser steps run the binarised masks (straight-through gradient), so the objective decides the units near the threshold (0: none, the authors').") var binaryFinish: Int = EraseRequest.defaults.binaryFinish
    @Option(help: "Prompts per optimiser step.") var batch: Int = EraseRequest.defaults.batch
    @Option(help: "AdamW learning rate (default 0.5 on mask logits, 1e-4 for finetune and esd).") var lr: Double?
    @Option(help: "Learning rate after the 5-step warm-up: constant (the authors') or cosine (decays to 0 at the last iteration).")
    var lrSchedule: String = EraseRequest.defaults.lrSchedule
    @Option(help: "AdamW's ε (default 1e-8, PyTorch's and the authors'). Larger values (1e-6–1e-5) move only the mask logits with large gradients: smaller masks.")
    var adamEps: Double?
    @Option(help: "With text-encoder sites: weight γ of an extra term that keeps the text encoder's outputs, as the transformer reads them, for --text-preserve-prompts neutral captions and for the null prompt, which weighs as much as all captions together (0: none, the authors' objective; default \(ErasureOptions.defaultTextPreserve.formatted()) when text-encoder sites are masked).")
    var textPreserve: Double?
    @Option(help: "Neutral captions of the --text-preserve term (default 200).") var textPreservePrompts: Int?
    @Option(help: "With text-encoder sites: weight κ of a price on each closed text-encoder unit, κ times what closing it alone changes the --text-preserve captions' outputs by (estimated once); a unit then closes only where the concept outweighs its price (0: none).")
    var unitCost: Double = EraseRequest.defaults.unitCost
    @Option(help: "With text-encoder sites: what a closed text-encoder unit emits: zero (the authors' masking) or mean (its mean output over the --text-preserve captions, folded into the baked encoder's bias).")
    var textAblation: String = EraseRequest.defaults.textAblation
    @Option(help: "Mask relaxation: hard-concrete or sigmoid.") var relaxation: String = EraseRequest.defaults.relaxation
    @Option(help: "Binarisation: threshold[:T] (keep λ > T), top-site:F or top-global:F (default threshold:\(ErasureOptions.defaultTextThreshold.formatted()) when text-encoder sites are masked, else threshold:0, the authors').")
    var binarise: String?
    @Option(help: "Concept prompts generated per concept.") var conceptPrompts: Int = EraseRequest.defaults.conceptPrompts
    @Option(help: "Neutral prompts generated.") var neutralPrompts: Int = EraseRequest.defaults.neutralPrompts
    @Option(help: "Concept prompts from a file (one per line) instead.") var prompts: String?
    @Option(help: "Neutral prompts from a file (one per line).") var neutral: String?
    @Flag(help: "New noise for every epoch (default: one fixed x_T per prompt, as the authors).") var freshNoise = false
    @Flag(help: "Drop concept prompts whose original sample the detector does not read as the concept.") var filter = false
    @Option(help: "Random seed (prompts, noise, mask draws).") var seed: UInt64 = EraseRequest.defaults.seed
    @Option(help: "Independent training runs (seeds --seed, --seed + 1, …) whose mean mask logits are binarised: a unit closes only where the runs agree, so fewer units are closed by one run's noise (K times the training time).")
    var restarts: Int = EraseRequest.defaults.restarts
    @Option(help: "Mask methods with one run: when the training check finds training prompts that the binarised mask breaks (see --broken-factor), train again with the next seed, up to this many times, and keep the run with the fewest broken prompts (then the lowest objective). 0: never.")
    var retries: Int = EraseRequest.defaults.retries
    @Option(help: "The training check calls a prompt broken when its final error exceeds this factor times the concept prompts' mean distance to their targets before erasing.")
    var brokenFactor: Double = EraseRequest.defaults.brokenFactor
    @Option(help: "Output folder.") var out: String = EraseRequest.defaults.out
    @Flag(help: "Continue from OUT/state.safetensors.") var resume = false
    @Option(help: "Iterations between state checkpoints.") var checkpointEvery: Int = EraseRequest.defaults.checkpointEvery
    @Option(help: "Prompts per concept set of the evaluation afterwards (`mce evaluate`'s protocol; 0 = no evaluation).") var evalPrompts: Int = EraseRequest.defaults.evalPrompts
    @Option(help: "Neutral prompts per other class in that evaluation (the protocol's 4; 16 measures neutral accuracy about twice as precisely).") var evalPerClass: Int = EraseRequest.defaults.evalPerClass
    @Option(help: "Detector weights for the filter and the evaluation.") var detector: String = SceneDetector.defaultPath

    /// The options as the library takes them.
    var request: EraseRequest {
        var q = EraseRequest()
        q.concepts = concept; q.synonyms = synonym; q.model = model; q.method = method; q.eta = eta; q.target = target
        q.beta = beta; q.steps = steps; q.guidance = guidance; q.sites = sites; q.iterations = iterations; q.epochs = epochs
        q.binaryFinish = binaryFinish; q.batch = batch; q.lr = lr; q.lrSchedule = lrSchedule; q.adamEps = adamEps
        q.textPreserve = textPreserve; q.textPreservePrompts = textPreservePrompts; q.unitCost = unitCost
        q.textAblation = textAblation; q.relaxation = relaxation; q.binarise = binarise
        q.conceptPrompts = conceptPrompts; q.neutralPrompts = neutralPrompts; q.promptFile = prompts; q.neutralFile = neutral
        q.freshNoise = freshNoise; q.filter = filter; q.seed = seed; q.restarts = restarts; q.retries = retries
        q.brokenFactor = brokenFactor; q.out = out; q.resume = resume; q.checkpointEvery = checkpointEvery
        q.evalPrompts = evalPrompts; q.evalPerClass = evalPerClass
        return q
    }

    func validate() throws {
        try precisionOption.validateFloatOnly()
        do { try request.validate() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            try prepareOutputFolder(out)
            let transformer = FluxTransformer(weights: try FluxWeightLoader(path: model).load(as: Float.self))
            let subject = WorldSubject(transformer: transformer, encoder: try PromptEncoder())
            let judge: SceneDetector? = FileManager.default.fileExists(atPath: detector) ? try SceneDetector(path: detector) : nil
            if filter && judge == nil { throw CLIError("--filter needs the detector (\(detector) not found)") }
            try EraseJob(request: request, subject: subject, judge: judge, output: .terminal).run()
        }
    }
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
                let c = merged.allMaskedCounts
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
