import ArgumentParser
import BLAS
import Pipeline
import Foundation

@main
enum Entry {
    static func main() {
        #if os(Linux)
        KernelSelection.reexecWithTunedKernelsIfNeeded()
        #endif
        MCE.main()
    }
}

struct MCE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mce",
        abstract: "Minimalist concept erasure for FLUX-architecture text-to-image transformers.",
        discussion: "The product's commands are at the top; `mce world …` holds the small test world's tools and `mce engine …` the FLUX engine's.",
        subcommands: [
            Erase.self, Evaluate.self, Attack.self, Masks.self, Generate.self, Sample.self, WorldCommands.self, EngineCommands.self,
            // The engine's and the world's commands under their earlier top-level names, for scripts.
            Alias<Forward>.self, Alias<Gradient>.self, Alias<Compare>.self, GroupAlias<Bench>.self, Alias<Info>.self, Alias<Export>.self,
            Alias<TrainBase>.self, Alias<EvaluateBase>.self, Alias<TrainDetector>.self, Alias<EvaluateDetector>.self,
        ])
}

/// `mce world …`: the small text-to-image world the product is tested on.
struct WorldCommands: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "world",
        abstract: "The small test world: train and measure its base model and its detector.",
        subcommands: [TrainBase.self, EvaluateBase.self, TrainDetector.self, EvaluateDetector.self])
}

/// `mce engine …`: the FLUX engine on explicit inputs.
struct EngineCommands: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "The FLUX engine: forward passes, gradients, sampling, comparisons, benchmarks, checkpoint info and export.",
        subcommands: [Forward.self, Gradient.self, Sample.self, Compare.self, Bench.self, Info.self, Export.self])
}

/// A command under its earlier top-level name, hidden from the help (`mce forward` = `mce engine forward`).
struct Alias<C: ParsableCommand>: ParsableCommand {
    static var configuration: CommandConfiguration { hidden(C.self) }

    @OptionGroup var command: C

    mutating func run() throws { try command.run() }
}

/// A command group under its earlier top-level name, hidden from the help (`mce bench forward` = `mce engine bench forward`).
struct GroupAlias<C: ParsableCommand>: ParsableCommand {
    static var configuration: CommandConfiguration { hidden(C.self) }
}

/// `C`'s configuration under its own name, left out of the help.
func hidden<C: ParsableCommand>(_: C.Type) -> CommandConfiguration {
    var c = C.configuration
    c.commandName = C._commandName
    c.shouldDisplay = false
    return c
}

extension Precision: ExpressibleByArgument {}

/// `--precision`, for every command that runs the transformer.
struct PrecisionOption: ParsableArguments {
    @Option(help: "Compute precision: f32 (the reference), bf16 (matrix products in bfloat16 through oneDNN with f32 accumulation; element-wise work stays f32), or f64 (reference checks; only where the command has an f64 path).")
    var precision: Precision = .f32

    /// Refuses f64 for commands that run in Float only.
    func validateFloatOnly() throws {
        if precision == .f64 { throw ValidationError("--precision f64 is for the reference commands (forward, sample, gradient, bench forward); use f32 or bf16") }
    }

    /// Makes every Float model loaded from now on compute in this precision; returns the name that ran.
    @discardableResult
    func apply() -> String {
        Precision.forNewModels = precision == .f64 ? .f32 : precision
        return precision.effectiveName
    }
}

/// Options shared by the commands that load a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model: a .safetensors file (diffusers or BFL layout), a diffusers model folder, or a sharded folder.")
    var model: String

    @Option(help: "A diffusers config.json to use instead of the one found with (or inferred from) the model.")
    var config: String?

    @Flag(help: "Decode block weights from the mapped file on every use instead of keeping them in RAM (for models larger than memory).")
    var stream = false

    @OptionGroup var precisionOption: PrecisionOption
    var precision: Precision { precisionOption.precision }
    /// The precision that ran, for outputs' metadata.
    var precisionName: String { precision == .f64 ? "f64" : precision.effectiveName }
}

/// Commands that load a model and run in the precision `--precision` asks for.
protocol PrecisionCommand {
    var modelOptions: ModelOptions { get }
    func run<T: Scalar>(_: T.Type) throws
}

extension PrecisionCommand {
    /// Runs `run(T.self)` for the chosen precision, reporting errors as one line.
    func dispatch() throws {
        try reportingErrors {
            modelOptions.precisionOption.apply()
            switch modelOptions.precision {
            case .f32, .bf16: try run(Float.self)
            case .f64: try run(Double.self)
            }
        }
    }
}

/// Errors the CLI reports as one clear line (no stack trace), exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Runs a command body, turning library errors into `Error: …` lines.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ValidationError {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch {
        FileHandle.standardError.write(Data("Error: \(describe(error))\n".utf8))
        throw ExitCode(1)
    }
}

/// One line for an error: Foundation's file errors (creating an output folder, writing a PNG) name the
/// path and the system's reason instead of printing their whole NSError dictionary.
func describe(_ error: Error) -> String {
    let ns = error as NSError
    guard ns.domain == NSCocoaErrorDomain else { return "\(error)" }
    let path = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    let writing = (512..<768).contains(ns.code)   // CocoaError's file-write codes; 256..<512 are reads
    var reason = ns.localizedDescription
    if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
        reason = String(cString: strerror(Int32(u.code)))
    } else if writing, let path, let why = whyNotWritable(path) {
        reason = why   // Foundation often gives only "error 512"; say what is in the way
    }
    return path.map { "cannot \(writing ? "create or write" : "read") '\($0)': \(reason)" } ?? reason
}

/// Creates the output folder of `option` before any work, so a bad path fails at once and by name.
func prepareOutputFolder(_ path: String, option: String = "--out") throws {
    let fm = FileManager.default
    do { try fm.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw CLIError("\(option): \(describe(error))")
    }
    guard fm.isWritableFile(atPath: path) else { throw CLIError("\(option): '\(path)' is not writable") }
}

/// A command's JSON report: pretty-printed, keys sorted (the same run writes the same bytes), written
/// atomically; returns the bytes written.
@discardableResult
func writeReport<T: Encodable>(_ value: T, to path: String) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(value)
    try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    return data
}

/// What keeps `path` from being created: its nearest existing ancestor is a file, or is not writable.
func whyNotWritable(_ path: String) -> String? {
    let fm = FileManager.default
    var p = (path as NSString).deletingLastPathComponent
    while !p.isEmpty {
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: p, isDirectory: &isDir) {
            if !isDir.boolValue { return "'\(p)' is a file, not a folder" }
            return fm.isWritableFile(atPath: p) ? nil : "'\(p)' is not writable"
        }
        let parent = (p as NSString).deletingLastPathComponent
        if parent == p { break }
        p = parent
    }
    return nil
}

/// `--guidance` of the sampling commands: a finite scale ≥ 0 (1 = off, 0 = the empty prompt only).
func checkGuidance(_ g: Double) throws {
    if let problem = guidanceProblem(g) { throw ValidationError(problem) }
}

func log(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
