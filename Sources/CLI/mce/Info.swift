import ArgumentParser
import BLAS
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
            RAM for the weights, by --precision (activations come on top):
              f64   resident \(size(n * 8))
              f32   resident \(size(n * 4))
              bf16  resident \(size(n * 6)) to sample (f32 weights + bf16 packs of Wᵀ), \(size(n * 8)) to erase or train (+ packs of W for the backward pass)
              --stream, any precision: \(size(blockMax * 8)) for the largest block, plus the mapped file (page cache, evictable)
            bf16 products: \(BF16.isNative ? BF16.backend : "not native on this CPU (\(BF16.backend)); bf16 runs in f32")
            """)
        }
    }
}
