import BLAS
import Foundation
import SafeTensors

/// Opens a FLUX checkpoint (a single safetensors file in either layout, a diffusers model folder, or a
/// sharded folder), works out its config and layout, and decodes tensors to the compute precision on demand.
public final class FluxWeightLoader: @unchecked Sendable {
    public let store: TensorStore
    public let config: FluxConfig
    public let layout: CheckpointLayout
    public let path: String

    /// - Parameter config: overrides the config found with (or inferred from) the checkpoint.
    public init(path: String, config override: FluxConfig? = nil) throws {
        self.path = path
        do {
            store = try TensorStore(path: path)
        } catch let e as SafeTensorsError {
            throw FluxError.io("cannot open model '\(path)': \(e)")
        }
        layout = CheckpointLayout.detect(names: store.names)
        let cfg = try override ?? Self.findConfig(path: path, store: store, layout: layout)
        try cfg.validate()
        config = cfg
        try checkTensorSet()
    }

    // MARK: config discovery

    private static func findConfig(path: String, store: TensorStore, layout: CheckpointLayout) throws -> FluxConfig {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        // A diffusers folder has config.json inside; a weights file taken out of one has it beside.
        let folder = isDir.boolValue ? URL(fileURLWithPath: path) : URL(fileURLWithPath: path).deletingLastPathComponent()
        let url = folder.appendingPathComponent("config.json")
        if FileManager.default.fileExists(atPath: url.path) { return try FluxConfig.load(json: url) }
        if let json = store.metadata["config"] {
            return try FluxConfig.decode(json: Data(json.utf8), source: "\(path) (__metadata__ config)")
        }
        return try inferConfig(store: store, layout: layout, path: path)
    }

    /// Infers the architecture from tensor shapes (BFL single files carry no config). Only the RoPE axis split
    /// cannot be read off the weights: FLUX.1's (16, 56, 56) is assumed for 128-wide heads; other head sizes
    /// need a config.
    static func inferConfig(store: TensorStore, layout: CheckpointLayout, path: String) throws -> FluxConfig {
        func shape(_ n: String) throws -> [Int] {
            guard store.contains(n) else {
                throw FluxError.invalidConfig("\(path): no config.json or __metadata__ config, and cannot infer one: tensor '\(n)' is missing")
            }
            return try store.info(n).shape
        }
        func count(_ prefix: String) -> Int {
            var maxIndex = -1
            for n in store.names where n.hasPrefix(prefix) {
                let rest = n.dropFirst(prefix.count)
                if let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) { maxIndex = max(maxIndex, i) }
            }
            return maxIndex + 1
        }
        let bfl = layout == .bfl
        let xin = try shape(bfl ? "img_in.weight" : "x_embedder.weight")
        let ctx = try shape(bfl ? "txt_in.weight" : "context_embedder.weight")
        let pooled = try shape(bfl ? "vector_in.in_layer.weight" : "time_text_embed.text_embedder.linear_1.weight")
        let out = try shape(bfl ? "final_layer.linear.weight" : "proj_out.weight")
        let nDouble = count(bfl ? "double_blocks." : "transformer_blocks.")
        let nSingle = count(bfl ? "single_blocks." : "single_transformer_blocks.")
        let normName: String
        if nDouble > 0 {
            normName = bfl ? "double_blocks.0.img_attn.norm.key_norm.scale" : "transformer_blocks.0.attn.norm_k.weight"
        } else {
            normName = bfl ? "single_blocks.0.norm.key_norm.scale" : "single_transformer_blocks.0.attn.norm_k.weight"
        }
        let headDim = try shape(normName)[0]
        let dim = xin[0]
        guard headDim > 0, dim % headDim == 0 else {
            throw FluxError.invalidConfig("\(path): model width \(dim) is not a multiple of the head size \(headDim)")
        }
        guard headDim == 128 else {
            throw FluxError.invalidConfig(
                "\(path): no config.json or __metadata__ config; head size \(headDim) is not FLUX.1's 128, so the RoPE axes cannot be inferred — pass --config CONFIG.json")
        }
        let guidance = store.contains(bfl ? "guidance_in.in_layer.weight" : "time_text_embed.guidance_embedder.linear_1.weight")
        return FluxConfig(
            inChannels: xin[1], outChannels: out[0] == xin[1] ? nil : out[0], numLayers: nDouble,
            numSingleLayers: nSingle, attentionHeadDim: headDim, numAttentionHeads: dim / headDim,
            jointAttentionDim: ctx[1], pooledProjectionDim: pooled[1], guidanceEmbeds: guidance,
            axesDimsRope: [16, 56, 56])
    }

    /// Every stored tensor must be used by the config and every needed one present with the right size:
    /// a checkpoint with more blocks than its config (or a stray tensor) is an error, not silently ignored.
    private func checkTensorSet() throws {
        var needed = Set<String>()
        for n in config.diffusersTensorNames {
            for p in layout.pieces(for: n, config: config) {
                needed.insert(p.name)
                guard store.contains(p.name) else {
                    throw FluxError.missingWeight("'\(p.name)' (for \(n)) not found in \(path) (\(layout.rawValue) layout)")
                }
            }
        }
        let extra = store.names.filter { !needed.contains($0) }
        if !extra.isEmpty {
            let list = extra.prefix(5).joined(separator: ", ")
            throw FluxError.badShape(
                "\(path) has \(extra.count) tensor(s) the config does not use (\(list)\(extra.count > 5 ? ", …" : "")); does the config match the checkpoint?")
        }
    }

    // MARK: decoding

    /// The diffusers tensors `names`, concatenated along the first dimension, decoded to T.
    func tensor<T: Scalar>(_ names: [String]) throws -> Buffer<T> {
        var total = 0
        var plan: [(piece: CheckpointLayout.Piece, elements: Range<Int>, for: String)] = []
        for n in names {
            guard let expected = config.diffusersShape(of: n) else { throw FluxError.missingWeight(n) }
            let expectCount = expected.reduce(1, *)
            var got = 0
            for p in layout.pieces(for: n, config: config) {
                let info = try store.info(p.name)
                let perRow = info.shape.dropFirst().reduce(1, *)
                let rows = p.rows ?? 0..<(info.shape.first ?? 1)
                if info.shape.count > 1 && info.shape.count != expected.count || (expected.count > 1 && perRow != expected[1])
                    || rows.upperBound > (info.shape.first ?? 1) {
                    throw FluxError.badShape("\(path): tensor '\(p.name)' has shape \(info.shape), which does not fit \(n) \(expected) of this config")
                }
                let elements = (rows.lowerBound * perRow)..<(rows.upperBound * perRow)
                plan.append((p, elements, n))
                got += elements.count
            }
            if got != expectCount {
                throw FluxError.badShape("\(path): \(n) should have shape \(expected) (\(expectCount) values) but the checkpoint gives \(got)")
            }
            total += got
        }
        let out = Buffer<T>(uninitialized: total)
        var offset = 0
        for item in plan {
            let dst = out.p + offset
            let n = item.elements.count
            do {
                if T.self == Float.self {
                    try store.decode(item.piece.name, elements: item.elements,
                                     into: UnsafeMutableBufferPointer(start: UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self), count: n))
                } else if T.self == Double.self {
                    try store.decode(item.piece.name, elements: item.elements,
                                     into: UnsafeMutableBufferPointer(start: UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Double.self), count: n))
                } else {
                    fatalError("unsupported scalar type \(T.self)")
                }
            } catch let e as SafeTensorsError {
                throw FluxError.io("\(e)")
            }
            // A NaN in the weights would silently poison every output; refuse it at load time.
            for j in 0..<n where !dst[j].isFinite {
                throw FluxError.badInput("\(path): tensor '\(item.piece.name)' (\(item.for)) contains a non-finite value (NaN or ±inf)")
            }
            offset += n
        }
        return out
    }

    func linear<T: Scalar>(_ stems: [String]) throws -> LinearWeights<T> {
        let w: Buffer<T> = try tensor(stems.map { "\($0).weight" })
        let b: Buffer<T> = try tensor(stems.map { "\($0).bias" })
        let inDim = config.diffusersShape(of: "\(stems[0]).weight")![1]
        return LinearWeights(w: w, b: b, inDim: inDim, outDim: b.count)
    }

    func linear<T: Scalar>(_ stem: String) throws -> LinearWeights<T> { try linear([stem]) }

    public func top<T: Scalar>() throws -> TopWeights<T> {
        let g = config.guidanceEmbeds
        return TopWeights(
            xEmbedder: try linear("x_embedder"),
            contextEmbedder: try linear("context_embedder"),
            timeLinear1: try linear("time_text_embed.timestep_embedder.linear_1"),
            timeLinear2: try linear("time_text_embed.timestep_embedder.linear_2"),
            guidanceLinear1: g ? try linear("time_text_embed.guidance_embedder.linear_1") : nil,
            guidanceLinear2: g ? try linear("time_text_embed.guidance_embedder.linear_2") : nil,
            textLinear1: try linear("time_text_embed.text_embedder.linear_1"),
            textLinear2: try linear("time_text_embed.text_embedder.linear_2"),
            normOut: try linear("norm_out.linear"),
            projOut: try linear("proj_out"))
    }

    public func doubleBlock<T: Scalar>(_ i: Int) throws -> DoubleBlockWeights<T> {
        let b = "transformer_blocks.\(i)"
        return DoubleBlockWeights(
            norm1: try linear("\(b).norm1.linear"),
            norm1Context: try linear("\(b).norm1_context.linear"),
            qkv: try linear(["\(b).attn.to_q", "\(b).attn.to_k", "\(b).attn.to_v"]),
            addQKV: try linear(["\(b).attn.add_q_proj", "\(b).attn.add_k_proj", "\(b).attn.add_v_proj"]),
            normQ: try tensor(["\(b).attn.norm_q.weight"]), normK: try tensor(["\(b).attn.norm_k.weight"]),
            normAddedQ: try tensor(["\(b).attn.norm_added_q.weight"]),
            normAddedK: try tensor(["\(b).attn.norm_added_k.weight"]),
            toOut: try linear("\(b).attn.to_out.0"), toAddOut: try linear("\(b).attn.to_add_out"),
            ff0: try linear("\(b).ff.net.0.proj"), ff2: try linear("\(b).ff.net.2"),
            ffContext0: try linear("\(b).ff_context.net.0.proj"), ffContext2: try linear("\(b).ff_context.net.2"))
    }

    public func singleBlock<T: Scalar>(_ i: Int) throws -> SingleBlockWeights<T> {
        let b = "single_transformer_blocks.\(i)"
        return SingleBlockWeights(
            norm: try linear("\(b).norm.linear"),
            linear1: try linear(["\(b).attn.to_q", "\(b).attn.to_k", "\(b).attn.to_v", "\(b).proj_mlp"]),
            normQ: try tensor(["\(b).attn.norm_q.weight"]), normK: try tensor(["\(b).attn.norm_k.weight"]),
            projOut: try linear("\(b).proj_out"))
    }

    /// Loads the weights. `resident: false` streams block weights from the mapped file on each use.
    public func load<T: Scalar>(as: T.Type = T.self, resident: Bool = true) throws -> FluxWeights<T> {
        try FluxWeights(config: config, loader: self, resident: resident)
    }
}
