import BLAS

/// y = x·Wᵀ + b with W [out, in] row-major.
public struct LinearWeights<T: Scalar>: @unchecked Sendable {
    public let w: Buffer<T>
    public let b: Buffer<T>
    public let inDim: Int
    public let outDim: Int

    public init(w: Buffer<T>, b: Buffer<T>, inDim: Int, outDim: Int) {
        precondition(w.count == inDim * outDim && b.count == outDim)
        self.w = w; self.b = b; self.inDim = inDim; self.outDim = outDim
    }

    func forward(_ y: UnsafeMutablePointer<T>, ldy: Int? = nil, _ x: UnsafePointer<T>, ldx: Int? = nil, rows: Int) {
        linearForward(y, ldy: ldy, x, ldx: ldx, w.p, b.p, rows: rows, inDim: inDim, outDim: outDim)
    }
}

/// A double-stream (MM-DiT) block. q/k/v projections are stored fused ([q; k; v] rows, like BFL's `qkv`)
/// so each stream needs one GEMM instead of three.
public struct DoubleBlockWeights<T: Scalar>: @unchecked Sendable {
    public let norm1: LinearWeights<T>          // dim -> 6·dim (shift, scale, gate) × (msa, mlp)
    public let norm1Context: LinearWeights<T>
    public let qkv: LinearWeights<T>            // to_q | to_k | to_v
    public let addQKV: LinearWeights<T>         // add_q_proj | add_k_proj | add_v_proj
    public let normQ, normK, normAddedQ, normAddedK: Buffer<T>
    public let toOut: LinearWeights<T>
    public let toAddOut: LinearWeights<T>
    public let ff0, ff2: LinearWeights<T>       // ff.net.0.proj, ff.net.2
    public let ffContext0, ffContext2: LinearWeights<T>
}

/// A single-stream block. linear1 = [to_q; to_k; to_v; proj_mlp] fused like BFL's `linear1`.
public struct SingleBlockWeights<T: Scalar>: @unchecked Sendable {
    public let norm: LinearWeights<T>           // dim -> 3·dim (shift, scale, gate)
    public let linear1: LinearWeights<T>        // dim -> 3·dim + mlp
    public let normQ, normK: Buffer<T>
    public let projOut: LinearWeights<T>        // [attn | mlp] -> dim
}

/// Embedders and the output head.
public struct TopWeights<T: Scalar>: @unchecked Sendable {
    public let xEmbedder: LinearWeights<T>
    public let contextEmbedder: LinearWeights<T>
    public let timeLinear1, timeLinear2: LinearWeights<T>
    public let guidanceLinear1, guidanceLinear2: LinearWeights<T>?
    public let textLinear1, textLinear2: LinearWeights<T>
    public let normOut: LinearWeights<T>        // dim -> 2·dim, rows: scale then shift (diffusers order)
    public let projOut: LinearWeights<T>
}

/// Where block weights come from. Resident weights are decoded once; streaming weights are decoded from the
/// memory-mapped checkpoint each time a block runs, so a 12B-parameter bf16 model never needs its f32
/// copy in RAM — only one block at a time.
public final class FluxWeights<T: Scalar>: @unchecked Sendable {
    public let config: FluxConfig
    public let top: TopWeights<T>
    private var doubles: [DoubleBlockWeights<T>]
    private var singles: [SingleBlockWeights<T>]
    private let loader: FluxWeightLoader?

    /// Resident weights.
    public init(config: FluxConfig, top: TopWeights<T>, doubles: [DoubleBlockWeights<T>], singles: [SingleBlockWeights<T>]) {
        self.config = config; self.top = top; self.doubles = doubles; self.singles = singles; loader = nil
    }

    init(config: FluxConfig, loader: FluxWeightLoader, resident: Bool) throws {
        self.config = config
        self.loader = resident ? nil : loader
        top = try loader.top()
        doubles = []; singles = []
        if resident {
            doubles = try (0..<config.numLayers).map { try loader.doubleBlock($0) }
            singles = try (0..<config.numSingleLayers).map { try loader.singleBlock($0) }
        }
    }

    public var isStreaming: Bool { loader != nil }

    public func doubleBlock(_ i: Int) throws -> DoubleBlockWeights<T> {
        if let loader { return try loader.doubleBlock(i) }
        return doubles[i]
    }

    public func singleBlock(_ i: Int) throws -> SingleBlockWeights<T> {
        if let loader { return try loader.singleBlock(i) }
        return singles[i]
    }
}
