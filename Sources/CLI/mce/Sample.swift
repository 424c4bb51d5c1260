import ArgumentParser
import Jobs
import BLAS
import Flux
import Foundation

enum ShiftOption: String, ExpressibleByArgument, CaseIterable {
    case dynamic, none

    /// `--shift` as given, else dynamic for models with guidance embeddings (FLUX.1-dev) and none otherwise.
    static func resolve(_ option: ShiftOption?, config: FluxConfig, imageTokens: Int) -> (ShiftOption, TimeShift) {
        let kind = option ?? (config.guidanceEmbeds ? .dynamic : .none)
        return (kind, kind == .dynamic ? .dynamic(imageSeqLen: imageTokens) : .none)
    }
}

/// The options of a sampling run, shared by `sample` and `gradient`.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Inputs as for `forward` (hidden_states is the starting noise x_T; timestep is ignored); for `gradient` also target and mask.<site> logits.")
    var inputs: String

    @Option(help: "Number of Euler steps (≥ 1).")
    var steps: Int

    @Option(help: "Time shift: dynamic (FLUX.1-dev; μ from the image sequence length) or none (schnell). Default: dynamic when the model has guidance embeddings.")
    var shift: ShiftOption?

    @Option(help: "Output safetensors file.")
    var output: String

    func validate() throws {
        if steps < 1 { throw ValidationError("--steps must be ≥ 1, got \(steps)") }
    }
}

struct Sample: ParsableCommand, PrecisionCommand {
    static let configuration = CommandConfiguration(
        abstract: "Flow-matching Euler sampling from x_T = hidden_states; writes `sample` (final packed latent) and `sigmas`.")

    @OptionGroup var modelOptions: ModelOptions

    @OptionGroup var sampling: SamplingOptions
    var inputs: String { sampling.inputs }
    var steps: Int { sampling.steps }
    var shift: ShiftOption? { sampling.shift }
    var output: String { sampling.output }

    func run() throws { try dispatch() }

    func run<T: Scalar>(_: T.Type) throws {
        let model = try loadModel(modelOptions, as: T.self)
        let inp = try ModelInputs<T>(path: inputs, config: model.config, requireTimestep: false)
        let (shiftKind, timeShift) = ShiftOption.resolve(shift, config: model.config, imageTokens: inp.imageTokens)
        let schedule = try FlowMatchSchedule(steps: steps, shift: timeShift)
        let sampler = EulerSampler(transformer: model, cond: inp.cond, schedule: schedule, start: inp.hidden)
        let progress = Progress(total: steps, label: "sampling")
        let x = try sampler.run { done, _ in progress.update(done) }
        var meta = ["command": "sample", "steps": "\(steps)", "shift": shiftKind.rawValue, "precision": modelOptions.precisionName]
        if case .exponential(let mu) = timeShift { meta["mu"] = "\(mu)" }
        try writeTensors(output, metadata: meta) { w in
            let shape = [inp.batch, inp.imageTokens, model.config.outputChannels]
            w.add("sample", shape: shape, floats: x.array.map { Float($0) })
            if T.self == Double.self { w.add("sample_float64", shape: shape, doubles: x.array.map { Double($0) }) }
            w.add("sigmas", shape: [schedule.sigmas.count], doubles: schedule.sigmas)
        }
    }
}

/// A one-line progress report on stderr with rate and ETA, redrawn in place on a terminal.
final class Progress {
    let total: Int
    let label: String
    let start = Date()
    private let tty = isatty(2) != 0
    private var lastLine = Date()

    /// Work done before this run (a resumed job), left out of the rate the ETA is computed from.
    let initial: Int

    init(total: Int, label: String, initial: Int = 0) { self.total = total; self.label = label; self.initial = initial }

    func update(_ reported: Int, extra: String = "") {
        let done = min(max(reported, 0), total)     // a count past the total is shown as the total
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > initial ? elapsed / Double(done - initial) * Double(total - done) : 0
        let line = String(format: "%@ %d/%d  %.1fs elapsed, ETA %.1fs%@", label, done, total, elapsed, eta, extra.isEmpty ? "" : "  " + extra)
        if tty {
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)\(done == total ? "\n" : "")".utf8))
        } else if done == total || done == 1 || done % max(1, total / 10) == 0 || Date().timeIntervalSince(lastLine) >= 60 {
            // Logs (not a terminal) get a line per tenth and at least one a minute.
            lastLine = Date()
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }
}

extension JobOutput {
    /// Log and progress on stderr, results on stdout.
    static let terminal = JobOutput(log: { line in mce.log(line) }, say: { print($0) }, progress: { label, total, initial in
        let bar = Progress(total: total, label: label, initial: initial)
        return { done, extra in bar.update(done, extra: extra) }
    })
}
