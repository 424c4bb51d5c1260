import ArgumentParser
import BaseModel
import BLAS
import Flux
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (random weights; JSON on stdout). Compare with scripts/bench_reference.py run alongside (scripts/bench_all.sh alternates them).",
        subcommands: [BenchForward.self, BenchEraseStep.self, BenchTrainStep.self, BenchMatmul.self])
}

enum BenchConfig: String, ExpressibleByArgument, CaseIterable {
    case small, medium

    var config: FluxConfig { self == .small ? .small : .medium }
    /// Image grid side: 8×8 = 64 tokens (small) or 16×16 = 256 tokens (medium); 16 text tokens.
    var grid: Int { self == .small ? 8 : 16 }
    static let textTokens = 16

    /// Random weights (seed 0) and random inputs (seed 1) of this config for `batch` samples of `textTokens`
    /// text tokens: model, conditioning and a generator of further random values.
    func setup<T: Scalar>(_: T.Type, batch: Int = 1, textTokens: Int = Self.textTokens) throws
        -> (model: FluxTransformer<T>, cond: FluxConditioning<T>, randn: (Int) -> Buffer<T>) {
        let cfg = config
        let model = FluxTransformer(weights: FluxWeights<T>.random(config: cfg, seed: 0))
        var rng = SplitMix64(seed: 1)
        let randn: (Int) -> Buffer<T> = { n in Buffer((0..<n).map { _ in T(rng.normal()) }) }
        let cond = try FluxConditioning<T>(
            config: cfg, batch: batch, encoderHiddenStates: randn(batch * textTokens * cfg.jointAttentionDim),
            pooledProjections: randn(batch * cfg.pooledProjectionDim), guidance: nil,
            txtIds: Packing.textIds(count: textTokens), imgIds: Packing.imageIds(gridHeight: grid, gridWidth: grid))
        return (model, cond, randn)
    }
}

/// Runs `body` `repeats` times (at least once) and returns the median and minimum wall time in seconds.
func timed(repeats: Int, _ body: () throws -> Void) rethrows -> (median: Double, min: Double, count: Int) {
    var times: [Double] = []
    for _ in 0..<max(1, repeats) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
    }
    return (times.sorted()[times.count / 2], times.min()!, times.count)
}

struct BenchForward: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "forward", abstract: "Seconds per transformer forward, GFLOP/s and peak RSS.")

    @Option(help: "small or medium (the benchmark configs).")
    var config: BenchConfig = .small

    @Option(help: "Timed repetitions (the median is reported).")
    var repeats: Int = 20

    @Option(help: "Untimed warm-up calls.")
    var warmup: Int = 3

    @OptionGroup var precisionOption: PrecisionOption

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            switch precisionOption.precision {
            case .f32, .bf16: try run(Float.self)
            case .f64: try run(Double.self)
            }
        }
    }

    func run<T: Scalar>(_: T.Type) throws {
        let cfg = config.config
        let (model, cond, randn) = try config.setup(T.self)
        let lt = BenchConfig.textTokens, li = config.grid * config.grid
        let x = randn(li * cfg.inChannels)
        for _ in 0..<warmup { _ = try model.forward(hidden: x.p, sigma: [0.5], cond: cond) }
        let (median, fastest, count) = try timed(repeats: repeats) { _ = try model.forward(hidden: x.p, sigma: [0.5], cond: cond) }
        let flops = cfg.forwardFLOPs(textTokens: lt, imageTokens: li)
        printJSON([
            "impl": "mce (Swift, \(backendName))", "bench": "forward", "config": config.rawValue,
            "precision": T.self == Double.self ? "f64" : precisionOption.precision.effectiveName, "median_s": median, "min_s": fastest,
            "gflop_per_forward": flops / 1e9, "gflops": flops / median / 1e9,
            "peak_rss_mib": peakResidentMiB(), "threads": Parallel.workerCount, "repeats": count,
            "blas_core": KernelSelection.coreName,
        ])
    }
}

struct BenchEraseStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "erase-step",
        abstract: "One optimisation iteration of the masking objective: N steps forward, checkpointed backward to the mask logits, AdamW.")

    @Option(help: "small or medium (the benchmark configs).")
    var config: BenchConfig = .small

    @Option(help: "Sampling steps N.")
    var steps: Int = 4

    @Option(help: "Timed iterations (the median is reported).")
    var repeats: Int = 5

    @OptionGroup var precisionOption: PrecisionOption

    func validate() throws {
        if steps < 1 { throw ValidationError("--steps must be ≥ 1") }
        try precisionOption.validateFloatOnly()
    }

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            let cfg = config.config
            let (model, cond, randn) = try config.setup(Float.self)
            let lt = BenchConfig.textTokens, li = config.grid * config.grid
            let xT = randn(li * cfg.inChannels), target = randn(li * cfg.inChannels)
            // The original authors' default sites: ff, ff_context, norm1_context of every double block.
            let sites = (0..<cfg.numLayers).flatMap { i in
                [MaskSite(.ff, block: i), MaskSite(.ffContext, block: i), MaskSite(.norm1Context, block: i)]
            }
            let logits = sites.map { Buffer<Float>(repeating: 3, count: $0.width(cfg)) }
            let optimizer = AdamW<Float>(lr: 0.5)
            let schedule = try FlowMatchSchedule(steps: steps, shift: .none)
            func iteration() throws {
                var masks = MaskSet<Float>()
                for (s, l) in zip(sites, logits) { masks[s] = Buffer(l.array.map { 1 / (1 + Foundation.exp(-$0)) }) }
                let sampler = CheckpointedSampler(transformer: model, cond: cond, schedule: schedule, masks: masks)
                let r = try sampler.gradient(start: xT, maskGradients: sites,
                                             objective: CheckpointedSampler<Float>.meanSquaredError(target: target))
                let grads = zip(sites, logits).map { s, l -> Buffer<Float> in
                    let dm = r.grads.masks[s]!, m = masks[s]!
                    return Buffer((0..<l.count).map { dm[$0] * m[$0] * (1 - m[$0]) })
                }
                optimizer.update(logits, grads)
            }
            try iteration()
            let (median, fastest, count) = try timed(repeats: repeats, iteration)
            // Counted as the PyTorch reference counts it: N forward steps + N replays + their backward = 3N forwards.
            let flops = 3 * Double(steps) * cfg.forwardFLOPs(textTokens: lt, imageTokens: li)
            printJSON([
                "impl": "mce (Swift, \(backendName))", "bench": "erase-step", "config": config.rawValue, "steps": steps,
                "precision": precisionOption.precision.effectiveName,
                "median_s": median, "min_s": fastest, "gflops": flops / median / 1e9,
                "peak_rss_mib": peakResidentMiB(), "threads": Parallel.workerCount, "repeats": count,
                "blas_core": KernelSelection.coreName, "masked_units": logits.reduce(0) { $0 + $1.count },
            ])
        }
    }
}

struct BenchTrainStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step",
        abstract: "One training step of the base model's kind: a batch's taped forward, MSE, backward to every weight, AdamW.")

    @Option(help: "small or medium (the benchmark configs; the committed base model is `small`).")
    var config: BenchConfig = .small

    @Option(help: "Samples per step (train-base's default is 64).")
    var batch: Int = 64

    @Option(help: "Text tokens per sample (default: the world's padded caption length, which train-base uses; needs MiniLM).")
    var textTokens: Int?

    @Option(help: "Timed steps (the median is reported).")
    var repeats: Int = 5

    @OptionGroup var precisionOption: PrecisionOption

    func validate() throws {
        if batch < 1 || repeats < 1 { throw ValidationError("--batch and --repeats must be ≥ 1") }
        if let t = textTokens, t < 1 { throw ValidationError("--text-tokens must be ≥ 1") }
        try precisionOption.validateFloatOnly()
    }

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            let cfg = config.config, B = batch
            let lt = try textTokens ?? PromptEncoder().paddedLength, li = config.grid * config.grid
            let (model, cond, randn) = try config.setup(Float.self, batch: B, textTokens: lt)
            let x = randn(B * li * cfg.inChannels), target = randn(B * li * cfg.inChannels)
            let sigmas = randn(B).array.map { 1 / (1 + Foundation.exp(-Double($0))) }   // logit-normal, as train-base
            let weightGrads = FluxWeights<Float>.zeros(config: cfg)
            let optimizer = AdamW<Float>(lr: 1e-4, weightDecay: 0)
            let mse = Objectives.meanSquaredError(target: target)
            var losses: [Double] = []
            func step() throws {
                weightGrads.zero()
                let grads = FluxGradients(config: cfg, batch: B, textTokens: lt, imageTokens: li, maskSites: [], weightGradients: weightGrads)
                losses.append(try model.valueAndGradient(hidden: x.p, sigma: sigmas, cond: cond, grads: grads) { v in
                    let (l, d) = try mse(v)
                    return (l, d)
                })
                optimizer.update(model.weights.allBuffers, weightGrads.allBuffers)
                model.weights.weightsChanged()
            }
            try step()
            let (median, fastest, count) = try timed(repeats: repeats, step)
            guard losses.allSatisfy(\.isFinite), losses.last! < losses.first! else {
                throw CLIError("train-step: the loss did not fall over the timed steps (\(losses))")
            }
            // Counted as the PyTorch reference counts it: a training step is 3 forwards' worth of FLOPs per sample.
            let flops = 3 * cfg.forwardFLOPs(textTokens: lt, imageTokens: li, batch: B)
            printJSON([
                "impl": "mce (Swift, \(backendName))", "bench": "train-step", "config": config.rawValue, "batch": B,
                "precision": precisionOption.precision.effectiveName,
                "text_tokens": lt, "image_tokens": li, "median_s": median, "min_s": fastest,
                "samples_per_s": Double(B) / median, "gflops": flops / median / 1e9,
                "peak_rss_mib": peakResidentMiB(), "threads": Parallel.workerCount, "repeats": count,
                "blas_core": KernelSelection.coreName, "loss_first": losses.first!, "loss_last": losses.last!,
            ])
        }
    }
}

struct BenchMatmul: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul",
        abstract: "Every Linear shape of a forward pass (y = x·Wᵀ + b, batch 1): OpenBLAS f32, oneDNN f32 and oneDNN bf16 with W packed once; GFLOP/s per shape and for the whole set.")

    @Option(help: "small or medium (the benchmark configs).")
    var config: BenchConfig = .medium

    @Option(help: "Seconds to spend per shape and kernel.")
    var seconds: Double = 0.3

    func run() throws {
        try reportingErrors {
            guard BF16.isNative else { throw CLIError("bench matmul needs native bf16 products (\(BF16.backend))") }
            let c = config.config, d = c.dim, m = c.mlpDim, lt = BenchConfig.textTokens, li = config.grid * config.grid
            // (rows, in, out, uses per forward)
            let shapes: [(Int, Int, Int, Int)] = [
                (li, c.inChannels, d, 1), (lt, c.jointAttentionDim, d, 1), (1, d, 6 * d, 2 * c.numLayers), (1, d, 3 * d, c.numSingleLayers),
                (li, d, 3 * d, c.numLayers), (lt, d, 3 * d, c.numLayers), (li, d, d, c.numLayers), (lt, d, d, c.numLayers),
                (li, d, m, c.numLayers), (li, m, d, c.numLayers), (lt, d, m, c.numLayers), (lt, m, d, c.numLayers),
                (li + lt, d, 3 * d + m, c.numSingleLayers), (li + lt, d + m, d, c.numSingleLayers), (li, d, c.outputChannels, 1),
            ]
            var rng = SplitMix64(seed: 3)
            var totals = [String: (flops: Double, time: Double)]()
            for (rows, k, n, uses) in shapes {
                let x = Buffer((0..<(rows * k)).map { _ in Float(rng.normal()) })
                let w = Buffer((0..<(n * k)).map { _ in Float(rng.normal()) })
                let b = Buffer((0..<n).map { _ in Float(rng.normal()) })
                let y = Buffer<Float>.zeros(rows * n)
                let f32Pack = try PackedMatrix(k: k, n: n, b: w.p, sk: 1, sn: k, bf16: false)
                let bf16Pack = try PackedMatrix(k: k, n: n, b: w.p, sk: 1, sn: k, bf16: true)
                let kernels: [(String, () -> Void)] = [
                    ("openblas_f32", { Gemm.run(transB: true, m: rows, n: n, k: k, a: x.p, lda: k, b: w.p, ldb: k, c: y.p, ldc: n) }),
                    ("onednn_f32", { f32Pack.product(m: rows, a: x.p, lda: k, c: y.p, ldc: n, bias: b.p, accumulate: false) }),
                    ("onednn_bf16", { bf16Pack.product(m: rows, a: x.p, lda: k, c: y.p, ldc: n, bias: b.p, accumulate: false) }),
                ]
                var line: [String: Any] = ["bench": "matmul", "config": config.rawValue, "m": rows, "k": k, "n": n, "uses": uses]
                let flops = 2.0 * Double(rows * k * n)
                for (name, body) in kernels {
                    body()
                    var count = 0
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    var elapsed = 0.0
                    while elapsed < seconds || count < 3 {
                        body(); count += 1
                        elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                    }
                    let per = elapsed / Double(count)
                    line["\(name)_gflops"] = flops / per / 1e9
                    let t = totals[name] ?? (0, 0)
                    totals[name] = (t.flops + flops * Double(uses), t.time + per * Double(uses))
                }
                printJSON(line)
            }
            var total: [String: Any] = ["bench": "matmul", "config": config.rawValue, "shapes": "all, weighted by uses per forward"]
            for (name, t) in totals { total["\(name)_gflops"] = t.flops / t.time / 1e9 }
            total["bf16_over_f32"] = totals["openblas_f32"]!.time / totals["onednn_bf16"]!.time
            total["onednn_f32_over_openblas"] = totals["openblas_f32"]!.time / totals["onednn_f32"]!.time
            printJSON(total)
        }
    }
}

#if canImport(Accelerate)
let blasName = "Accelerate"
#else
let blasName = "OpenBLAS"
#endif

/// What runs the matrix products of models made now: BLAS in f32, oneDNN in bf16.
var backendName: String { Precision.forNewModels == .bf16 && BF16.isNative ? BF16.backend + " bf16" : blasName }

func printJSON(_ dict: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
