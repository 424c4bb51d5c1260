import ArgumentParser
import BLAS
import Flux
import Foundation
import SafeTensors

struct Forward: ParsableCommand, PrecisionCommand {
    static let configuration = CommandConfiguration(
        abstract: "One transformer call on inputs named like diffusers' forward arguments; writes `output` [1,L,C] (F32).")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Inputs: hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids (+ guidance).")
    var inputs: String

    @Option(help: "Output safetensors file.")
    var output: String

    func run() throws { try dispatch() }

    func run<T: Scalar>(_: T.Type) throws {
        let model = try loadModel(modelOptions, as: T.self)
        let inp = try ModelInputs<T>(path: inputs, config: model.config, requireTimestep: true)
        let out = try model.forward(hidden: inp.hidden.p, sigma: inp.timestep!, cond: inp.cond)
        try writeTensors(output, metadata: ["command": "forward", "precision": modelOptions.precisionName]) { w in
            let shape = [inp.batch, inp.imageTokens, model.config.outputChannels]
            w.add("output", shape: shape, floats: out.array.map { Float($0) })
            // f64 runs exist for tight comparisons, which an F32 tensor would round away.
            if T.self == Double.self { w.add("output_float64", shape: shape, doubles: out.array.map { Double($0) }) }
        }
    }
}

/// Loads a model in the requested precision, mapping a config override.
func loadModel<T: Scalar>(_ o: ModelOptions, as: T.Type) throws -> FluxTransformer<T> {
    let override = try o.config.map { try FluxConfig.load(json: URL(fileURLWithPath: $0)) }
    let loader = try FluxWeightLoader(path: o.model, config: override)
    return FluxTransformer(weights: try loader.load(as: T.self, resident: !o.stream))
}

/// Writes a safetensors file atomically; refuses to write non-finite values.
func writeTensors(_ path: String, metadata: [String: String], _ fill: (inout TensorWriter) throws -> Void) throws {
    var w = TensorWriter(metadata: metadata)
    try fill(&w)
    try w.write(to: path)
}

/// Collects tensors, checks them for NaN/inf, and hands them to the safetensors writer.
struct TensorWriter {
    private var writer: SafeTensorsWriter
    private var bad: [String] = []

    init(metadata: [String: String]) { writer = SafeTensorsWriter(metadata: metadata) }

    mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        if floats.contains(where: { !$0.isFinite }) { bad.append(name) }
        writer.add(name, shape: shape, floats: floats)
    }

    mutating func add(_ name: String, shape: [Int], doubles: [Double]) {
        if doubles.contains(where: { !$0.isFinite }) { bad.append(name) }
        writer.add(name, shape: shape, doubles: doubles)
    }

    func write(to path: String) throws {
        if !bad.isEmpty {
            throw CLIError("refusing to write \(path): \(bad.joined(separator: ", ")) contain NaN or ±inf (diverged computation or bad inputs)")
        }
        try writer.write(to: path)
    }
}
