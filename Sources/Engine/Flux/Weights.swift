import BLAS
#if canImport(Glibc)
import Glibc
#endif

/// A linear layer's weight packed for oneDNN's bf16 products: Wᵀ for the forward pass (packed when the mode is
/// set) and W for the backward pass's input gradient (packed on first use). Dropped when the weights change.
public final class LinearPacks: @unchecked Sendable {
    public private(set) var mode: MatmulMode = .f32
    private var forwardPack: PackedMatrix?
    private var backwardPack: PackedMatrix?
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() { pthread_mutex_init(lock, nil) }
    deinit { pthread_mutex_destroy(lock); lock.deallocate() }

    /// Bytes held by the packed copies.
    public var bytes: Int {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return (forwardPack?.bytes ?? 0) + (backwardPack?.bytes ?? 0)
    }

    func set(_ m: MatmulMode) {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        mode = m
        forwardPack = nil; backwardPack = nil
    }

    /// Forgets the packed copies (after the f32 weights changed).
    func invalidate() {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        forwardPack = nil; backwardPack = nil
    }

    /// The pack of op(W) for y = x·Wᵀ (forward) or dx = dy·W (backward), made on first use.
    func pack(_ w: UnsafePointer<Float>, inDim: Int, outDim: Int, backward: Bool) -> PackedMatrix {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        if let p = backward ? backwardPack : forwardPack { return p }
        do {
            let p = backward
                ? try PackedMatrix(k: outDim, n: inDim, b: w, sk: inDim, sn: 1)
                : try PackedMatrix(k: inDim, n: outDim, b: w, sk: 1, sn: inDim)
            if backward { backwardPack = p } else { forwardPack = p }
            return p
        } catch {
            fatalError("\(error)")   // the mode is only set after BF16.isNative said oneDNN works here
        }
    }
}

/// y = x·Wᵀ + b with W [out, in] row-major.
public struct LinearWeights<T: Scalar>: @unchecked Sendable {
    public let w: Buffer<T>
    public let b: Buffer<T>
    public let inDim: Int
    public let outDim: Int
    /// oneDNN packs of W, used when the model computes its products in bf16.
    public let packs = LinearPacks()

    public init(w: Buffer<T>, b: Buffer<T>, inDim: Int, outDim: Int) {
        precondition(w.count == inDim * outDim && b.count == outDim)
        self.w = w; self.b = b; self.inDim = inDim; self.outDim = outDim
    }

    func forward(_ y: UnsafeMutablePointer<T>, ldy: Int? = nil, _ x: UnsafePointer<T>, ldx: Int? = nil, rows: Int) {
        if let pack = bf16Pack(backward: false) {
            pack.product(m: rows, a: float(x), lda: ldx ?? inDim, c: floatMut(y), ldc: ldy ?? outDim, bias: float(UnsafePointer(b.p)), accumulate: false)
            return
        }
        linearForward(y, ldy: ldy, x, ldx: ldx, w.p, b.p, rows: rows, inDim: inDim, outDim: outDim)
    }

    /// The bf16 pack for this direction when the model computes in bf16 (always nil for Double).
    func bf16Pack(backward: Bool) -> PackedMatrix? {
        guard packs.mode == .bf16, T.self == Float.self else { return nil }
        return packs.pack(float(UnsafePointer(w.p)), inDim: inDim, outDim: outDim, backward: backward)
    }

    /// Sets how this layer's products run; W is packed for bf16 on its first use.
    func setMode(_ mode: MatmulMode) {
        packs.set(T.self == Float.self ? mode : .f32)
    }
}

@inline(__always) func float<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
    UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
}
@inline(__always) func floatMut<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
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

extension DoubleBlockWeights {
    var linears: [LinearWeights<T>] {
        [norm1, norm1Context, qkv, addQKV, toOut, toAddOut, ff0, ff2, ffContext0, ffContext2]
    }
}

extension SingleBlockWeights {
    var linears: [LinearWeights<T>] { [norm, linear1, projOut] }
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
        setPrecision(Precision.forNewModels)
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
        setPrecision(Precision.forNewModels)
    }

    public var isStreaming: Bool { loader != nil }

    /// How the matrix products run: f32 BLAS, or bf16 through oneDNN (Float models on a CPU that has it).
    public private(set) var matmulMode: MatmulMode = .f32

    /// Sets the products' precision (new models take `Precision.forNewModels`). In bf16 each weight is packed
    /// once, on first use (streamed blocks as they are decoded). Double models stay in f64.
    public func setPrecision(_ precision: Precision) {
        let mode = T.self == Float.self ? BF16.mode(for: precision) : .f32
        matmulMode = mode
        for l in allLinears { l.setMode(mode) }
    }

    /// Call after changing weights in place (an optimiser step, folding a mask): bf16 packs are made again.
    public func weightsChanged() {
        for l in allLinears { l.packs.invalidate() }
    }

    /// Bytes held by bf16 packs.
    public var packedBytes: Int { allLinears.reduce(0) { $0 + $1.packs.bytes } }

    public func doubleBlock(_ i: Int) throws -> DoubleBlockWeights<T> {
        if let loader {
            let w: DoubleBlockWeights<T> = try loader.doubleBlock(i)
            if matmulMode == .bf16 { for l in w.linears { l.setMode(.bf16) } }
            return w
        }
        return doubles[i]
    }

    public func singleBlock(_ i: Int) throws -> SingleBlockWeights<T> {
        if let loader {
            let w: SingleBlockWeights<T> = try loader.singleBlock(i)
            if matmulMode == .bf16 { for l in w.linears { l.setMode(.bf16) } }
            return w
        }
        return singles[i]
    }
}

extension FluxWeights {
    /// Builds every tensor of a model with this config, in the canonical order, from two factories.
    static func build(
        config: FluxConfig, linear lin: (Int, Int) -> LinearWeights<T>, norm: (Int) -> Buffer<T>
    ) -> FluxWeights<T> {
        let d = config.dim, m = config.mlpDim, hd = config.attentionHeadDim, P = FluxConfig.timeProjDim
        let top = TopWeights<T>(
            xEmbedder: lin(config.inChannels, d), contextEmbedder: lin(config.jointAttentionDim, d),
            timeLinear1: lin(P, d), timeLinear2: lin(d, d),
            guidanceLinear1: config.guidanceEmbeds ? lin(P, d) : nil,
            guidanceLinear2: config.guidanceEmbeds ? lin(d, d) : nil,
            textLinear1: lin(config.pooledProjectionDim, d), textLinear2: lin(d, d),
            normOut: lin(d, 2 * d), projOut: lin(d, config.outputChannels))
        let doubles = (0..<config.numLayers).map { _ in
            DoubleBlockWeights<T>(
                norm1: lin(d, 6 * d), norm1Context: lin(d, 6 * d), qkv: lin(d, 3 * d), addQKV: lin(d, 3 * d),
                normQ: norm(hd), normK: norm(hd), normAddedQ: norm(hd), normAddedK: norm(hd),
                toOut: lin(d, d), toAddOut: lin(d, d), ff0: lin(d, m), ff2: lin(m, d),
                ffContext0: lin(d, m), ffContext2: lin(m, d))
        }
        let singles = (0..<config.numSingleLayers).map { _ in
            SingleBlockWeights<T>(norm: lin(d, 3 * d), linear1: lin(d, 3 * d + m), normQ: norm(hd), normK: norm(hd),
                                  projOut: lin(d + m, d))
        }
        return FluxWeights(config: config, top: top, doubles: doubles, singles: singles)
    }

    /// All-zero tensors (gradient accumulators, optimiser moments).
    public static func zeros(config: FluxConfig) -> FluxWeights<T> {
        build(config: config, linear: { i, o in LinearWeights(w: .zeros(i * o), b: .zeros(o), inDim: i, outDim: o) },
              norm: { Buffer<T>.zeros($0) })
    }

    /// Every linear layer of a resident model (plus the top layers of a streaming one).
    var allLinears: [LinearWeights<T>] {
        let t = top
        var out = [t.xEmbedder, t.contextEmbedder, t.timeLinear1, t.timeLinear2]
        if let g1 = t.guidanceLinear1, let g2 = t.guidanceLinear2 { out += [g1, g2] }
        out += [t.textLinear1, t.textLinear2, t.normOut, t.projOut]
        for b in doubles { out += b.linears }
        for b in singles { out += b.linears }
        return out
    }

    /// Every buffer of a resident model, in a fixed order (for optimisers and zeroing).
    public var allBuffers: [Buffer<T>] {
        func lin(_ l: LinearWeights<T>) -> [Buffer<T>] { [l.w, l.b] }
        let t = top
        var out = lin(t.xEmbedder) + lin(t.contextEmbedder) + lin(t.timeLinear1) + lin(t.timeLinear2)
        if let g1 = t.guidanceLinear1, let g2 = t.guidanceLinear2 { out += lin(g1) + lin(g2) }
        out += lin(t.textLinear1) + lin(t.textLinear2) + lin(t.normOut) + lin(t.projOut)
        for b in doubles {
            out += [b.norm1, b.norm1Context, b.qkv, b.addQKV, b.toOut, b.toAddOut, b.ff0, b.ff2, b.ffContext0, b.ffContext2].flatMap(lin)
            out += [b.normQ, b.normK, b.normAddedQ, b.normAddedK]
        }
        for b in singles { out += [b.norm, b.linear1, b.projOut].flatMap(lin) + [b.normQ, b.normK] }
        return out
    }

    public func zero() { for b in allBuffers { b.zero() } }
}
