import BLAS

/// Named places where a per-neuron multiplier (broadcast over tokens) scales the forward pass. Names are
/// diffusers module names, so a mask file means the same thing to every tool.
public struct MaskSite: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, CaseIterable, Sendable {
        case ff                 // transformer_blocks.i.ff: image FF hidden units after GELU (4·dim)
        case ffContext = "ff_context"       // text FF hidden units after GELU (4·dim)
        case norm1Context = "norm1_context" // text-stream modulation outputs (6·dim)
        case norm1              // image-stream modulation outputs (6·dim)
        case doubleAttn = "attn"            // per-head multiplier on a double block's attention output
        case projMLP = "proj_mlp"           // single block MLP hidden units after GELU (4·dim)
        case singleNorm = "norm"            // single block modulation outputs (3·dim)
        case singleAttn = "single_attn"     // per-head multiplier on a single block's attention output
        // Text-stream attention projections of a double block, one multiplier per output channel (before the
        // q/k RMSNorm): how the prompt's tokens enter the image tokens' attention as keys and values.
        case addQ = "attn.add_q_proj"
        case addK = "attn.add_k_proj"
        case addV = "attn.add_v_proj"

        public var isSingleBlock: Bool { self == .projMLP || self == .singleNorm || self == .singleAttn }
        /// The kinds that mask the fused text-stream [q | k | v] projection, in slot order.
        public static let textQKV: [Kind] = [.addQ, .addK, .addV]
        /// The column offset of a text-stream projection in the fused [q | k | v] output, in units of dim.
        public var textQKVSlot: Int? {
            switch self {
            case .addQ: return 0
            case .addK: return 1
            case .addV: return 2
            default: return nil
            }
        }
    }

    public let kind: Kind
    public let block: Int

    public init(_ kind: Kind, block: Int) { self.kind = kind; self.block = block }

    /// The diffusers module name, e.g. `transformer_blocks.3.ff_context` or `single_transformer_blocks.0.attn`.
    public var description: String {
        let prefix = kind.isSingleBlock ? "single_transformer_blocks" : "transformer_blocks"
        let leaf = kind == .singleAttn ? "attn" : kind.rawValue
        return "\(prefix).\(block).\(leaf)"
    }

    /// Parses a site name; nil when it is not one of the site patterns.
    public init?(name: String) {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 4, parts[2] == "attn", parts[0] == "transformer_blocks" { parts = [parts[0], parts[1], "attn." + parts[3]] }
        guard parts.count == 3, let i = Int(parts[1]), i >= 0 else { return nil }
        switch (parts[0], parts[2]) {
        case ("transformer_blocks", "ff"): kind = .ff
        case ("transformer_blocks", "ff_context"): kind = .ffContext
        case ("transformer_blocks", "norm1_context"): kind = .norm1Context
        case ("transformer_blocks", "norm1"): kind = .norm1
        case ("transformer_blocks", "attn"): kind = .doubleAttn
        case ("transformer_blocks", "attn.add_q_proj"): kind = .addQ
        case ("transformer_blocks", "attn.add_k_proj"): kind = .addK
        case ("transformer_blocks", "attn.add_v_proj"): kind = .addV
        case ("single_transformer_blocks", "proj_mlp"): kind = .projMLP
        case ("single_transformer_blocks", "norm"): kind = .singleNorm
        case ("single_transformer_blocks", "attn"): kind = .singleAttn
        default: return nil
        }
        block = i
    }

    /// Number of multipliers the site has in a model with this config.
    public func width(_ c: FluxConfig) -> Int {
        switch kind {
        case .ff, .ffContext, .projMLP: return c.mlpDim
        case .norm1, .norm1Context: return 6 * c.dim
        case .singleNorm: return 3 * c.dim
        case .doubleAttn, .singleAttn: return c.numAttentionHeads
        case .addQ, .addK, .addV: return c.dim
        }
    }

    /// Checks that the model has this block.
    public func validate(for c: FluxConfig) throws {
        let n = kind.isSingleBlock ? c.numSingleLayers : c.numLayers
        if block >= n {
            throw FluxError.badInput("mask site '\(self)' does not exist: the model has \(n) \(kind.isSingleBlock ? "single" : "double")-stream blocks")
        }
    }
}

/// Multipliers per site. Sites that are absent are unmasked (multiplier 1).
public struct MaskSet<T: Scalar>: @unchecked Sendable {
    public var values: [MaskSite: Buffer<T>] = [:]
    public init() {}
    public subscript(site: MaskSite) -> Buffer<T>? {
        get { values[site] }
        set { values[site] = newValue }
    }
    public subscript(kind: MaskSite.Kind, block: Int) -> Buffer<T>? { values[MaskSite(kind, block: block)] }
    public var isEmpty: Bool { values.isEmpty }
}
