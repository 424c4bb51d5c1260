import ArgumentParser
import BLAS
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
        subcommands: [Erase.self, Evaluate.self, Attack.self, Masks.self, Forward.self, Sample.self, Gradient.self, Generate.self, TrainBase.self, EvaluateBase.self, TrainDetector.self, EvaluateDetector.self, Info.self, Compare.self, Export.self, Bench.self])
}

enum Precision: String, ExpressibleByArgument, CaseIterable {
    case f32, f64
}

/// Options shared by the commands that load a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model: a .safetensors file (diffusers or BFL layout), a diffusers model folder, or a sharded folder.")
    var model: String

    @Option(help: "A diffusers config.json to use instead of the one found with (or inferred from) the model.")
    var config: String?

    @Flag(help: "Decode block weights from the mapped file on every use instead of keeping them in RAM (for models larger than memory).")
    var stream = false

    @Option(help: "Compute precision: f32, or f64 for tight reference checks.")
    var precision: Precision = .f32
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
            switch modelOptions.precision {
            case .f32: try run(Float.self)
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
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

func log(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
