import ArgumentParser
import Erasure
import Evaluation
import BaseModel
import BLAS
import Flux
import Foundation
import SafeTensors
import World

struct TrainBase: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-base",
        abstract: "Trains the base text-to-image model from scratch on the world's training scenes (rectified flow).",
        discussion: "Checkpoints go to OUT/checkpoint.safetensors every --checkpoint-every steps; --resume continues from it. At the end the EMA weights are written as a diffusers model folder OUT/model.")

    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: "Output folder.") var out: String = "out/train-base"
    @Flag(help: "Continue from OUT/checkpoint.safetensors.") var resume = false
    @Flag(help: "With --resume: accept a checkpoint planned for a different --steps; the cosine schedule continues from the current step towards the new end (recorded in the checkpoint).") var reschedule = false
    @Option(help: "Optimisation steps.") var steps: Int = 20_000
    @Option(help: "Batch size.") var batch: Int = 64
    @Option(help: "Peak learning rate (AdamW; linear warm-up, cosine decay).") var lr: Double = 3e-4
    @Option(help: "Warm-up steps.") var warmup: Int = 500
    @Option(help: "Model width (multiple of 64).") var width: Int = 256
    @Option(help: "Double-stream blocks.") var doubleBlocks: Int = 2
    @Option(help: "Single-stream blocks.") var singleBlocks: Int = 4
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Steps between checkpoints.") var checkpointEvery: Int = 500
    @Option(help: "Stop after this many steps of this invocation (the run can be resumed).") var maxSteps: Int?

    func validate() throws {
        try precisionOption.validateFloatOnly()
        if steps < 1 || batch < 1 { throw ValidationError("--steps and --batch must be ≥ 1") }
        if !(lr > 0) { throw ValidationError("--lr must be > 0") }
        if width < 64 || width % 64 != 0 { throw ValidationError("--width must be a positive multiple of 64") }
    }

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            var o = TrainingOptions()
            o.steps = steps; o.batch = batch; o.lr = lr; o.warmup = warmup; o.width = width
            o.doubleBlocks = doubleBlocks; o.singleBlocks = singleBlocks; o.seed = seed
            try prepareOutputFolder(out)
            let encoder = try PromptEncoder()
            let scenes = try SceneSampler.load(split: .train, seed: seed)
            let trainer = try Trainer(options: o, encoder: encoder, scenes: scenes)
            let ckpt = (out as NSString).appendingPathComponent("checkpoint.safetensors")
            if resume {
                guard FileManager.default.fileExists(atPath: ckpt) else { throw CLIError("--resume: no checkpoint at \(ckpt)") }
                try trainer.loadCheckpoint(from: ckpt, newLength: reschedule)
                log("resumed at step \(trainer.step)")
            }
            log("model: \(o.config.parameterCount) parameters, \(o.doubleBlocks) double + \(o.singleBlocks) single blocks, width \(o.width)")
            let first = trainer.step
            let progress = Progress(total: steps, label: "train-base", initial: first)
            let stop = min(steps, first + (maxSteps ?? steps))
            var smooth = 0.0
            let t0 = Date()
            // Every step's loss, appended (a resumed run continues the file): OUT/losses.csv.
            let lossLog = try LossLog(path: (out as NSString).appendingPathComponent("losses.csv"), from: first)
            while trainer.step < stop {
                let loss = try trainer.trainStep()
                lossLog.append(step: trainer.step, loss: loss)
                smooth = trainer.step == first + 1 ? loss : 0.98 * smooth + 0.02 * loss
                let rate = Double((trainer.step - first) * batch) / Date().timeIntervalSince(t0)
                progress.update(trainer.step, extra: String(format: "loss %.4f  %.0f samples/s", smooth, rate))
                if trainer.step % checkpointEvery == 0 || trainer.step == stop {
                    try trainer.saveCheckpoint(to: ckpt)
                }
            }
            let modelDir = (out as NSString).appendingPathComponent("model")
            try trainer.ema.writeDiffusersFolder(modelDir, metadata: [
                "note": "mce train-base EMA weights", "step": "\(trainer.step)", "schedule": trainer.schedule ?? "\(steps)@0",
                "options": try metadataJSON(o),
            ])
            log("time per phase (s): " + trainer.phaseSeconds.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value))" }.joined(separator: ", "))
            log("EMA weights at step \(trainer.step) written to \(modelDir)")
        }
    }
}

/// OUT/losses.csv of train-base: "step,loss" per line. On resume, lines past the resumed step are dropped first
/// (a run stopped between checkpoints logged steps that are done again).
final class LossLog {
    private let handle: FileHandle

    init(path: String, from step: Int) throws {
        var kept = "step,loss\n"
        if step > 0, let old = try? String(contentsOfFile: path, encoding: .utf8) {
            for line in old.split(separator: "\n").dropFirst() {
                if let s = Int(line.split(separator: ",").first ?? ""), s <= step { kept += line + "\n" }
            }
        }
        try kept.write(toFile: path, atomically: true, encoding: .utf8)
        guard let h = FileHandle(forWritingAtPath: path) else { throw CLIError("cannot append to \(path)") }
        h.seekToEndOfFile()
        handle = h
    }

    func append(step: Int, loss: Double) {
        handle.write(Data("\(step),\(loss)\n".utf8))
    }

    deinit { try? handle.close() }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generates 32×32 scenes for prompts with the base model or an erased model; writes PNGs and a labelled grid.",
        discussion: """
        An erased model is the base model (--model) with a mask file or an `mce erase` output folder (--masks), or a \
        baked checkpoint (--erased: OUT/model of `mce erase` or `mce masks bake`, read with the erased text encoder \
        beside it when there is one). It draws the same samples as `mce evaluate` for the same prompt and seed.
        """)

    @OptionGroup var precisionOption: PrecisionOption

    @Option(name: .long, help: "Prompt (repeatable).") var prompt: [String] = []
    @Option(help: "Model folder (default: the committed base model).") var model: String = BaseModelSpec.defaultModelPath
    @Option(help: "Sample the erased model: a mask file, or the output folder of `mce erase`.") var masks: String?
    @Option(help: "Sample a baked (erased) checkpoint, with its erased text encoder when one lies beside it.") var erased: String?
    @Option(help: "Images per prompt.") var count: Int = 4
    @Option(help: "First seed; image k of a prompt uses seed + k.") var seed: UInt64 = 0
    @Option(help: "Euler steps.") var steps: Int = 20
    @Option(help: "Classifier-free guidance scale (1 = off).") var guidance: Double = BaseModelSpec.defaultGuidance
    @Option(help: "Output folder.") var out: String = "out/generate"

    func validate() throws {
        try precisionOption.validateFloatOnly()
        if prompt.isEmpty { throw ValidationError("give at least one --prompt") }
        if count < 1 || steps < 1 { throw ValidationError("--count and --steps must be ≥ 1") }
        if masks != nil && erased != nil { throw ValidationError("give --masks or --erased, not both") }
        try checkGuidance(guidance)
    }

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            let loader = try FluxWeightLoader(path: model)
            let transformer = FluxTransformer(weights: try loader.load(as: Float.self))
            let encoder = try PromptEncoder()
            // The erased model, read as `mce evaluate` reads it: its masks, checkpoint and text encoder.
            var run: ErasedModel?
            if let m = masks {
                run = try ErasedModel.load(m, as: .masks, base: transformer, baseHash: try modelHash(model), encoder: encoder, option: "--masks", log: log)
            } else if let e = erased {
                run = try ErasedModel.load(e, as: .checkpoint, base: transformer, baseHash: try modelHash(model), encoder: encoder, option: "--erased", log: log)
            }
            let gen = Generator(model: run?.model ?? transformer, encoder: run?.encoder ?? encoder, steps: steps, guidanceScale: guidance)
            for p in prompt {
                // Refuse empty and over-long prompts and unknown words before any work. (The encoder itself
                // maps "" to the null prompt, which guidance uses; asked for by name it is a mistake.)
                do { _ = try gen.encoder.miniLM.tokenIds(p) } catch { throw CLIError("--prompt \"\(p)\": \(error)") }
            }
            try prepareOutputFolder(out)
            let prompts = prompt.flatMap { Array(repeating: $0, count: count) }
            let seeds = prompt.indices.flatMap { _ in (0..<count).map { seed + UInt64($0) } }
            let progress = Progress(total: prompts.count * steps, label: "generate")
            let images = try gen.images(prompts: prompts, seeds: seeds, masks: run?.masks ?? MaskSet()) { done, _ in progress.update(done) }
            for (i, img) in images.enumerated() {
                try PNG.write(img.upscaled(by: 4), to: (out as NSString).appendingPathComponent(String(format: "%03d.png", i)))
            }
            let grid = (out as NSString).appendingPathComponent("grid.png")
            try ImageGrid(columns: count, scale: 3, gap: 2, labelLines: 2).write(images, labels: prompts, to: grid)
            print("\(images.count) images and \(grid) written")
        }
    }
}
