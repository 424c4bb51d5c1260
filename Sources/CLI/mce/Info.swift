import ArgumentParser
import Flux
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Shows a checkpoint's layout, config, size and the RAM it needs.")

    @Option(help: "Model: a .safetensors file (diffusers or BFL layout), a diffusers model folder, or a sharded folder.")
    var model: String

    @Option(help: "A diffusers config.json to use instead of the one found with (or inferred from) the model.")
    var config: String?

    func run() throws {
        try reportingErrors {
            let override = try config.map { try FluxConfig.load(json: URL(fileURLWithPath: $0)) }
            let loader = try FluxWeightLoader(path: model, config: override)
            let c = loader.config
            let n = Double(c.parameterCount)
            func size(_ bytes: Double) -> String {
                bytes >= Double(1 << 30) ? String(format: "%.2f GiB", bytes / Double(1 << 30)) : String(format: "%.1f MiB", bytes / Double(1 << 20))
            }
            let blockMax = Double(max(c.numLayers > 0 ? 20 * c.dim * c.dim + 4 * c.dim * c.mlpDim : 0,
                                      3 * c.dim * c.dim + c.dim * (3 * c.dim + c.mlpDim) + (c.dim + c.mlpDim) * c.dim))
            print("""
            model:       \(model)
            layout:      \(loader.layout.rawValue)
            tensors:     \(loader.store.names.count)
            parameters:  \(c.parameterCount)
            config:      \(String(decoding: c.jsonData(pretty: false), as: UTF8.self))
            RAM, resident f32 weights:  \(size(n * 4)) (f64: \(size(n * 8)))
            RAM, --stream f32 weights:  \(size(blockMax * 4)) for the largest block, plus the mapped file (page cache, evictable)
            """)
        }
    }
}
