/// The two weight layouts FLUX checkpoints come in, and the mapping from the canonical (diffusers) tensor
/// names to slices of the tensors a checkpoint actually stores (flux.md §4.3).
public enum CheckpointLayout: String, Sendable {
    case diffusers
    case bfl

    /// A contiguous run of rows (first dimension) of a stored tensor; nil rows = the whole tensor.
    public struct Piece: Equatable, Sendable {
        public let name: String
        public let rows: Range<Int>?
    }

    /// BFL files are recognised by their block names (also after a `model.diffusion_model.` prefix is stripped).
    public static func detect(names: [String]) -> CheckpointLayout {
        names.contains { $0.hasPrefix("double_blocks.") || $0.hasPrefix("single_blocks.") || $0 == "img_in.weight" }
            ? .bfl : .diffusers
    }

    /// Where the diffusers tensor `name` lives in a checkpoint of this layout.
    public func pieces(for name: String, config: FluxConfig) -> [Piece] {
        switch self {
        case .diffusers: return [Piece(name: name, rows: nil)]
        case .bfl: return Self.bflPieces(for: name, dim: config.dim, mlp: config.mlpDim)
        }
    }

    private static func bflPieces(for name: String, dim d: Int, mlp m: Int) -> [Piece] {
        let (stem, leaf) = splitLeaf(name)       // leaf = "weight" | "bias"
        func whole(_ s: String, _ l: String = leaf) -> [Piece] { [Piece(name: "\(s).\(l)", rows: nil)] }
        func rows(_ s: String, _ r: Range<Int>) -> [Piece] { [Piece(name: "\(s).\(leaf)", rows: r)] }
        let top: [String: String] = [
            "x_embedder": "img_in", "context_embedder": "txt_in",
            "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
            "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
            "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
            "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
            "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
            "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
            "proj_out": "final_layer.linear",
        ]
        if let s = top[stem] { return whole(s) }
        if stem == "norm_out.linear" {
            // diffusers: [scale; shift], BFL: [shift; scale].
            return [Piece(name: "final_layer.adaLN_modulation.1.\(leaf)", rows: d..<(2 * d)),
                    Piece(name: "final_layer.adaLN_modulation.1.\(leaf)", rows: 0..<d)]
        }
        if let (i, rest) = blockIndex(stem, prefix: "transformer_blocks.") {
            let b = "double_blocks.\(i)"
            switch rest {
            case "norm1.linear": return whole("\(b).img_mod.lin")
            case "norm1_context.linear": return whole("\(b).txt_mod.lin")
            case "attn.to_q": return rows("\(b).img_attn.qkv", 0..<d)
            case "attn.to_k": return rows("\(b).img_attn.qkv", d..<(2 * d))
            case "attn.to_v": return rows("\(b).img_attn.qkv", (2 * d)..<(3 * d))
            case "attn.add_q_proj": return rows("\(b).txt_attn.qkv", 0..<d)
            case "attn.add_k_proj": return rows("\(b).txt_attn.qkv", d..<(2 * d))
            case "attn.add_v_proj": return rows("\(b).txt_attn.qkv", (2 * d)..<(3 * d))
            case "attn.norm_q": return whole("\(b).img_attn.norm.query_norm", "scale")
            case "attn.norm_k": return whole("\(b).img_attn.norm.key_norm", "scale")
            case "attn.norm_added_q": return whole("\(b).txt_attn.norm.query_norm", "scale")
            case "attn.norm_added_k": return whole("\(b).txt_attn.norm.key_norm", "scale")
            case "attn.to_out.0": return whole("\(b).img_attn.proj")
            case "attn.to_add_out": return whole("\(b).txt_attn.proj")
            case "ff.net.0.proj": return whole("\(b).img_mlp.0")
            case "ff.net.2": return whole("\(b).img_mlp.2")
            case "ff_context.net.0.proj": return whole("\(b).txt_mlp.0")
            case "ff_context.net.2": return whole("\(b).txt_mlp.2")
            default: break
            }
        }
        if let (i, rest) = blockIndex(stem, prefix: "single_transformer_blocks.") {
            let b = "single_blocks.\(i)"
            switch rest {
            case "norm.linear": return whole("\(b).modulation.lin")
            case "attn.to_q": return rows("\(b).linear1", 0..<d)
            case "attn.to_k": return rows("\(b).linear1", d..<(2 * d))
            case "attn.to_v": return rows("\(b).linear1", (2 * d)..<(3 * d))
            case "proj_mlp": return rows("\(b).linear1", (3 * d)..<(3 * d + m))
            case "attn.norm_q": return whole("\(b).norm.query_norm", "scale")
            case "attn.norm_k": return whole("\(b).norm.key_norm", "scale")
            case "proj_out": return whole("\(b).linear2")
            default: break
            }
        }
        return [Piece(name: name, rows: nil)]   // unknown: look it up verbatim (and fail clearly if absent)
    }

    private static func splitLeaf(_ name: String) -> (String, String) {
        guard let dot = name.lastIndex(of: ".") else { return (name, "") }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]))
    }

    private static func blockIndex(_ stem: String, prefix: String) -> (Int, String)? {
        guard stem.hasPrefix(prefix) else { return nil }
        let rest = stem.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) else { return nil }
        return (i, String(rest[rest.index(after: dot)...]))
    }
}

/// Every diffusers tensor name of a model with this config, in a stable order.
extension FluxConfig {
    public var diffusersTensorNames: [String] {
        var names: [String] = []
        func lin(_ s: String) { names += ["\(s).weight", "\(s).bias"] }
        lin("x_embedder"); lin("context_embedder")
        lin("time_text_embed.timestep_embedder.linear_1"); lin("time_text_embed.timestep_embedder.linear_2")
        if guidanceEmbeds {
            lin("time_text_embed.guidance_embedder.linear_1"); lin("time_text_embed.guidance_embedder.linear_2")
        }
        lin("time_text_embed.text_embedder.linear_1"); lin("time_text_embed.text_embedder.linear_2")
        for i in 0..<numLayers {
            let b = "transformer_blocks.\(i)"
            for s in ["norm1.linear", "norm1_context.linear", "attn.to_q", "attn.to_k", "attn.to_v",
                      "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_out.0", "attn.to_add_out",
                      "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"] { lin("\(b).\(s)") }
            for s in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"] { names.append("\(b).attn.\(s).weight") }
        }
        for i in 0..<numSingleLayers {
            let b = "single_transformer_blocks.\(i)"
            for s in ["norm.linear", "attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out"] { lin("\(b).\(s)") }
            for s in ["norm_q", "norm_k"] { names.append("\(b).attn.\(s).weight") }
        }
        lin("norm_out.linear"); lin("proj_out")
        return names
    }

    /// The diffusers shape of each tensor.
    public func diffusersShape(of name: String) -> [Int]? {
        let d = dim, m = mlpDim
        let isBias = name.hasSuffix(".bias")
        func lin(_ o: Int, _ i: Int) -> [Int] { isBias ? [o] : [o, i] }
        let stem = name.split(separator: ".").dropLast().joined(separator: ".")
        if name.hasSuffix("norm_q.weight") || name.hasSuffix("norm_k.weight")
            || name.hasSuffix("norm_added_q.weight") || name.hasSuffix("norm_added_k.weight") { return [attentionHeadDim] }
        switch stem {
        case "x_embedder": return lin(d, inChannels)
        case "context_embedder": return lin(d, jointAttentionDim)
        case "time_text_embed.timestep_embedder.linear_1", "time_text_embed.guidance_embedder.linear_1":
            return lin(d, FluxConfig.timeProjDim)
        case "time_text_embed.text_embedder.linear_1": return lin(d, pooledProjectionDim)
        case "norm_out.linear": return lin(2 * d, d)
        case "proj_out": return lin(outputChannels, d)
        default: break
        }
        if stem.hasSuffix("norm1.linear") || stem.hasSuffix("norm1_context.linear") { return lin(6 * d, d) }
        if stem.hasPrefix("single_transformer_blocks.") && stem.hasSuffix("norm.linear") { return lin(3 * d, d) }
        if stem.hasSuffix("ff.net.0.proj") || stem.hasSuffix("ff_context.net.0.proj") || stem.hasSuffix("proj_mlp") { return lin(m, d) }
        if stem.hasSuffix("ff.net.2") || stem.hasSuffix("ff_context.net.2") { return lin(d, m) }
        if stem.hasPrefix("single_transformer_blocks.") && stem.hasSuffix("proj_out") { return lin(d, d + m) }
        return lin(d, d)   // linear_2 of the embedders, q/k/v and output projections
    }
}
