import ArgumentParser
import BLAS
import Detector
import Foundation
import SafeTensors
import World

struct TrainDetector: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-detector",
        abstract: "Trains the concept detector (object class, object colour, background colour) on real scenes of the train splits.",
        discussion: """
            Scenes are rendered on the fly from the train splits (step t uses scenes t·batch ..< (t+1)·batch of the \
            seed's sampler, so none repeats). Checkpoints go to --checkpoint every --checkpoint-every steps; --resume \
            continues from it bit for bit. At the end OUT/detector.safetensors is written and evaluated on \
            --eval-count real scenes of the test splits (fixed seed); the accuracies go to OUT/report.json.
            """)

    @Option(help: "Output folder (detector.safetensors, report.json).") var out: String = "models/detector"
    @Option(help: "Checkpoint file (weights, AdamW moments, step).") var checkpoint: String = "out/train-detector/checkpoint.safetensors"
    @Flag(help: "Continue from the checkpoint.") var resume = false
    @Option(help: "Optimisation steps.") var steps: Int = 8000
    @Option(help: "Batch size.") var batch: Int = 64
    @Option(help: "Peak learning rate (AdamW; linear warm-up, cosine decay).") var lr: Double = 2e-3
    @Option(help: "Warm-up steps.") var warmup: Int = 200
    @Option(help: "Decoupled weight decay.") var weightDecay: Double = 0.05
    @Option(help: "Random seed (weights and training scenes).") var seed: UInt64 = 0
    @Option(help: "Convolutional stack: channels of each 3×3 conv, 0 for a 2×2 max-pool, comma-separated.")
    var layers: String = DetectorConfig.standard.layers.map(String.init).joined(separator: ",")
    @Option(help: "Group-norm groups after each convolution (0: none, convolutions get biases).") var normGroups: Int = DetectorConfig.standard.normGroups
    @Option(help: "Width of the penultimate (feature) layer.") var hidden: Int = DetectorConfig.standard.hidden
    @Option(help: "Steps between checkpoints.") var checkpointEvery: Int = 250
    @Option(help: "Stop after this many steps of this invocation (the run can be resumed).") var maxSteps: Int?
    @Option(help: "Test scenes for the final report.") var evalCount: Int = DetectorEvaluation.standardCount

    func options() throws -> DetectorTrainingOptions {
        let ls = layers.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard ls.allSatisfy({ $0 != nil }) else { throw ValidationError("--layers: comma-separated integers, e.g. 32,32,0,64") }
        var o = DetectorTrainingOptions()
        o.config = DetectorConfig(layers: ls.map { $0! }, normGroups: normGroups, hidden: hidden)
        o.steps = steps; o.batch = batch; o.lr = lr; o.warmup = warmup; o.weightDecay = weightDecay; o.seed = seed
        do { try o.validate() } catch { throw ValidationError("\(error)") }
        return o
    }

    func validate() throws {
        _ = try options()
        if checkpointEvery < 1 { throw ValidationError("--checkpoint-every must be ≥ 1") }
        if evalCount < 1 { throw ValidationError("--eval-count must be ≥ 1") }
    }

    func run() throws {
        try reportingErrors {
            let o = try options()
            let scenes = try SceneSampler.load(split: .train, seed: seed)
            let trainer = try DetectorTrainer(options: o, sampler: scenes)
            if resume {
                guard FileManager.default.fileExists(atPath: checkpoint) else { throw CLIError("--resume: no checkpoint at \(checkpoint)") }
                try trainer.loadCheckpoint(from: checkpoint)
                log("resumed at step \(trainer.step)")
            }
            try FileManager.default.createDirectory(atPath: (checkpoint as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            log("detector: \(o.config.summary), \(trainer.net.parameterCount) parameters; batch \(batch), \(steps) steps, \(Parallel.workerCount) workers")
            let progress = Progress(total: steps, label: "train-detector")
            let first = trainer.step
            let stop = min(steps, first + (maxSteps ?? steps))
            var smooth: [Double] = []
            let t0 = Date()
            while trainer.step < stop {
                let s = trainer.trainStep()
                let cur = [s.loss] + s.headAccuracies
                smooth = smooth.isEmpty ? cur : zip(smooth, cur).map { 0.98 * $0 + 0.02 * $1 }
                let rate = Double((trainer.step - first) * batch) / Date().timeIntervalSince(t0)
                progress.update(trainer.step, extra: String(format: "loss %.4f  acc class %.3f obj %.3f bg %.3f  %.0f scenes/s",
                                                            smooth[0], smooth[1], smooth[2], smooth[3], rate))
                if trainer.step % checkpointEvery == 0 || trainer.step == stop {
                    try trainer.saveCheckpoint(to: checkpoint)
                }
            }
            guard trainer.step == steps else {
                log("stopped at step \(trainer.step) of \(steps); continue with --resume")
                return
            }
            try prepareOutputFolder(out)
            let path = (out as NSString).appendingPathComponent("detector.safetensors")
            let optsJSON = try metadataJSON(o)
            let trainTime = trainer.trainingSeconds
            log("evaluating on \(evalCount) test scenes…")
            let detector = trainer.detector()
            let report = detector.evaluate(sampler: try DetectorEvaluation.sampler(), count: evalCount)
            try detector.save(to: path, metadata: [
                "note": "mce train-detector", "step": "\(trainer.step)", "options": optsJSON,
                "trainingSeconds": String(format: "%.0f", trainTime),
                "classAccuracy": String(format: "%.4f", report.classAccuracy),
                "objColorAccuracy": String(format: "%.4f", report.objColorAccuracy),
                "bgColorAccuracy": String(format: "%.4f", report.bgColorAccuracy),
            ])
            let full = TrainingRecord(options: o, steps: trainer.step, trainingSeconds: trainTime, workers: Parallel.workerCount, test: report)
            try writeReport(full, to: (out as NSString).appendingPathComponent("report.json"))
            print(report.table)
            print(String(format: "training time %.0f s; %@ and report.json written", trainTime, path))
        }
    }

    /// report.json: how the detector was made and what it measures.
    struct TrainingRecord: Encodable {
        let options: DetectorTrainingOptions
        let steps: Int
        let trainingSeconds: Double
        let workers: Int
        let test: DetectorReport
    }
}

struct EvaluateDetector: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate-detector",
        abstract: "Measures the detector's accuracies (overall, per class, colours) on real scenes of the test splits.")

    @Option(help: "Detector file.") var model: String = SceneDetector.defaultPath
    @Option(help: "Test scenes (fixed seed; the sampler balances classes in blocks of 20).") var count: Int = DetectorEvaluation.standardCount
    @Option(help: "Scene seed (default: the fixed evaluation seed).") var seed: UInt64?
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        if count < 1 { throw ValidationError("--count must be ≥ 1") }
    }

    func run() throws {
        try reportingErrors {
            let detector = try SceneDetector(path: model)
            let sampler = try SceneSampler.load(split: .test, wording: .train, seed: seed ?? DetectorEvaluation.seed)
            let t0 = Date()
            let report = detector.evaluate(sampler: sampler, count: count)
            if json {
                print(String(decoding: try report.json(), as: UTF8.self))
            } else {
                print(report.table)
                print(String(format: "%.1f s (%.0f scenes/s)", Date().timeIntervalSince(t0), Double(count) / Date().timeIntervalSince(t0)))
            }
        }
    }
}
