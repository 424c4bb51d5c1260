import ArgumentParser
import BaseModel
import Flux
import Foundation
import SafeTensors

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Writes any loadable checkpoint (diffusers, BFL, sharded) as a diffusers model folder in F32, BF16 or F16.",
        discussion: "A `mce train-base` checkpoint (OUT/checkpoint.safetensors) is exported as its EMA weights, so a running training can be looked at.")

    @Option(help: "Model to read.") var model: String
    @Option(help: "A diffusers config.json to use instead of the one found with (or inferred from) the model.") var config: String?
    @Option(help: "Output folder (config.json + diffusion_pytorch_model.safetensors).") var out: String
    @Option(help: "F32, BF16 or F16.") var dtype: String = "F32"

    func run() throws {
        try reportingErrors {
            guard let dt = DType(rawValue: dtype.uppercased()), [.F32, .BF16, .F16].contains(dt) else {
                throw CLIError("--dtype must be F32, BF16 or F16, got \(dtype)")
            }
            if let ema = try Trainer.emaWeights(checkpoint: model) {
                try ema.weights.writeDiffusersFolder(out, metadata: ["source": model, "step": "\(ema.step)", "note": "mce train-base EMA weights"], dtype: dt)
                print("wrote \(out) (\(dt.rawValue), EMA weights at step \(ema.step))")
                return
            }
            let override = try config.map { try FluxConfig.load(json: URL(fileURLWithPath: $0)) }
            let loader = try FluxWeightLoader(path: model, config: override)
            try loader.load(as: Float.self).writeDiffusersFolder(out, metadata: ["source": model], dtype: dt)
            print("wrote \(out) (\(dt.rawValue))")
        }
    }
}
