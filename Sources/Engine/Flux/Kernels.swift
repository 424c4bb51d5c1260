import BLAS

// Forward kernels over flat row-major buffers with explicit dimensions (llm.c style). "rows" is the number
// of token vectors (batch × tokens); per-sample vectors such as modulation chunks are indexed by
// `row / tokensPerSample` and carry an explicit stride, because they are slices of a wider modulation output.

let normEps = 1e-6

/// y = x · Wᵀ + b for `rows` input rows. W is [out, in] (PyTorch layout). ldy lets y be a column slice of a
/// wider buffer (e.g. the attention half of a single block's proj_out input).
@inline(__always)
func linearForward<T: Scalar>(
    _ y: UnsafeMutablePointer<T>, ldy: Int? = nil, _ x: UnsafePointer<T>, ldx: Int? = nil,
    _ w: UnsafePointer<T>, _ b: UnsafePointer<T>?, rows: Int, inDim: Int, outDim: Int
) {
    let ldy = ldy ?? outDim, ldx = ldx ?? inDim
    if let b {
        for r in 0..<rows { (y + r * ldy).update(from: b, count: outDim) }
    }
    Gemm.run(transA: false, transB: true, m: rows, n: outDim, k: inDim, alpha: 1, a: x, lda: ldx,
             b: w, ldb: inDim, beta: b == nil ? 0 : 1, c: y, ldc: ldy)
}

/// out = LN(x)·(1 + scale) + shift, LayerNorm without affine (eps 1e-6) over the last dim C.
/// shift/scale are per sample: sample s uses shift + s·modStride. Saves mean and 1/σ per row when asked
/// (backward recomputes the normalised value from them).
func adaNormForward<T: Scalar>(
    _ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
    shift: UnsafePointer<T>, scale: UnsafePointer<T>, modStride: Int,
    rows: Int, tokensPerSample: Int, C: Int,
    mean: UnsafeMutablePointer<T>? = nil, rstd: UnsafeMutablePointer<T>? = nil
) {
    let invC = 1 / T(C), eps = T(normEps)
    Parallel.forEachChunk(rows, workPerItem: 4 * C) { range in
        for r in range {
            let xr = x + r * C, orow = out + r * C
            var s: T = 0
            for c in 0..<C { s += xr[c] }
            let m = s * invC
            var v: T = 0
            for c in 0..<C { let d = xr[c] - m; v += d * d }
            let rs = 1 / (v * invC + eps).squareRoot()
            mean?[r] = m
            rstd?[r] = rs
            let sample = r / tokensPerSample
            let sh = shift + sample * modStride, sc = scale + sample * modStride
            for c in 0..<C { orow[c] = (xr[c] - m) * rs * (1 + sc[c]) + sh[c] }
        }
    }
}

/// x += gate ⊙ f, gate per sample (broadcast over tokens).
func gatedResidualForward<T: Scalar>(
    _ x: UnsafeMutablePointer<T>, _ f: UnsafePointer<T>, ldf: Int? = nil,
    gate: UnsafePointer<T>, modStride: Int, rows: Int, tokensPerSample: Int, C: Int
) {
    let ldf = ldf ?? C
    Parallel.forEachChunk(rows, workPerItem: C) { range in
        for r in range {
            let g = gate + (r / tokensPerSample) * modStride
            let xr = x + r * C, fr = f + r * ldf
            for c in 0..<C { xr[c] += g[c] * fr[c] }
        }
    }
}

@inline(__always)
func geluTanh<T: Scalar>(_ x: T) -> T {
    // 0.5·x·(1 + tanh(u)) = x·sigmoid(2u), u = √(2/π)(x + 0.044715x³): one exp, no cancellation.
    let u = T(0.7978845608028654) * (x + T(0.044715) * x * x * x)
    return x / (1 + T.fastExp(-2 * u))
}

/// GELU (tanh approximation) of `cols` columns per row: out[r] = GELU(x[r]) (out may alias x).
func geluForward<T: Scalar>(
    _ out: UnsafeMutablePointer<T>, ldo: Int, _ x: UnsafePointer<T>, ldx: Int, rows: Int, cols: Int
) {
    Parallel.forEachChunk(rows, workPerItem: 8 * cols) { range in
        for r in range {
            let xr = x + r * ldx, orow = out + r * ldo
            if UnsafePointer(orow) == xr {
                // In place: a loop over one pointer, which the compiler vectorises (with two pointers that may
                // overlap it falls back to scalar code when they do).
                for c in 0..<cols { orow[c] = geluTanh(orow[c]) }
            } else {
                for c in 0..<cols { orow[c] = geluTanh(xr[c]) }
            }
        }
    }
}

/// out = SiLU(x) = x·sigmoid(x).
func siluForward<T: Scalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, count: Int) {
    for i in 0..<count { out[i] = x[i] / (1 + T.fastExp(-x[i])) }
}

/// Per-head RMSNorm (eps 1e-6) with learned weight w[D], in place on [rows, H·D] with row stride ld.
/// Saves 1/rms per (row, head) when asked.
func rmsNormHeadsForward<T: Scalar>(
    _ x: UnsafeMutablePointer<T>, ld: Int, w: UnsafePointer<T>, rows: Int, heads: Int, D: Int,
    rrms: UnsafeMutablePointer<T>? = nil
) {
    let invD = 1 / T(D), eps = T(normEps)
    Parallel.forEachChunk(rows, workPerItem: 3 * heads * D) { range in
        for r in range {
            for h in 0..<heads {
                let v = x + r * ld + h * D
                var s: T = 0
                for d in 0..<D { s += v[d] * v[d] }
                let rr = 1 / (s * invD + eps).squareRoot()
                rrms?[r * heads + h] = rr
                for d in 0..<D { v[d] = v[d] * rr * w[d] }
            }
        }
    }
}

/// Rotary embedding on adjacent pairs (2m, 2m+1) of every head, in place on [B·S, H·D] (row stride ld).
/// cos/sin are [S, D] tables (repeat-interleaved per pair), shared by all heads and samples.
func ropeForward<T: Scalar>(
    _ x: UnsafeMutablePointer<T>, ld: Int, cos: UnsafePointer<T>, sin: UnsafePointer<T>,
    rows: Int, S: Int, heads: Int, D: Int
) {
    Parallel.forEachChunk(rows, workPerItem: 3 * heads * D) { range in
        for r in range {
            let cr = cos + (r % S) * D, sr = sin + (r % S) * D
            for h in 0..<heads {
                let v = x + r * ld + h * D
                var m = 0
                while m < D {
                    let a = v[m], b = v[m + 1]
                    v[m] = a * cr[m] - b * sr[m]
                    v[m + 1] = a * sr[m + 1] + b * cr[m + 1]
                    m += 2
                }
            }
        }
    }
}

/// Sum of n values with four partial sums: a plain `s += x[i]` loop is a serial dependency chain the
/// compiler may not reorder (no fast-math), which made reductions the slowest part of small kernels.
@inline(__always)
func sum4<T: Scalar>(_ x: UnsafePointer<T>, _ n: Int) -> T {
    var a: T = 0, b: T = 0, c: T = 0, d: T = 0
    var i = 0
    while i + 4 <= n {
        a += x[i]; b += x[i + 1]; c += x[i + 2]; d += x[i + 3]
        i += 4
    }
    while i < n { a += x[i]; i += 1 }
    return (a + b) + (c + d)
}

/// Numerically stable softmax of each row of an [rows, n] matrix, in place. The exp pass is a loop of its
/// own so it vectorises; the max and the sum are separate reductions.
@inline(__always)
func softmaxRows<T: Scalar>(_ p: UnsafeMutablePointer<T>, rows: Int, n: Int) {
    for r in 0..<rows {
        let row = p + r * n
        var m0 = row[0], m1 = row[0]
        var j = 0
        while j + 2 <= n {
            m0 = max(m0, row[j]); m1 = max(m1, row[j + 1])
            j += 2
        }
        if j < n { m0 = max(m0, row[j]) }
        let mx = max(m0, m1)
        for j in 0..<n { row[j] = T.fastExp(row[j] - mx) }
        let inv = 1 / sum4(row, n)
        for j in 0..<n { row[j] *= inv }
    }
}

/// Full (non-causal, unmasked) softmax attention per sample and head: O = softmax(Q Kᵀ/√D) V.
/// q, k, v, o are [B·S, H·D] with row stride ld (heads are strided column blocks; no copies).
/// probs, when given, receives P as [B, H, S, S] for the backward pass; otherwise a scratch is used.
func attentionForward<T: Scalar>(
    _ o: UnsafeMutablePointer<T>, ldo: Int,
    q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>, ld: Int,
    B: Int, S: Int, heads: Int, D: Int, probs: UnsafeMutablePointer<T>? = nil, mode: MatmulMode = .f32
) {
    let scale = 1 / T(D).squareRoot()
    let jobs = B * heads
    // Each job is one (sample, head): two small GEMMs and a softmax. Jobs run on our workers, each GEMM on
    // single-threaded BLAS, which beats threading every tiny GEMM. Without `probs` each worker reuses one
    // S×S scratch (at 1024² FLUX.1 that is 85 MB, not 85 MB per head).
    BLASThreads.configureOnce()
    Parallel.forEachChunk(jobs, workPerItem: 4 * S * S * D) { range in
        let scratch = probs == nil ? UnsafeMutablePointer<T>.allocate(capacity: S * S) : nil
        defer { scratch?.deallocate() }
        for job in range {
            let b = job / heads, h = job % heads
            let base = b * S * ld + h * D
            let p = probs.map { $0 + job * S * S } ?? scratch!
            Gemm.single(mode: mode, transA: false, transB: true, m: S, n: S, k: D, alpha: scale, a: q + base, lda: ld,
                   b: k + base, ldb: ld, beta: 0, c: p, ldc: S)
            softmaxRows(p, rows: S, n: S)
            Gemm.single(mode: mode, transA: false, transB: false, m: S, n: D, k: S, alpha: 1, a: p, lda: S,
                   b: v + base, ldb: ld, beta: 0, c: o + b * S * ldo + h * D, ldc: ldo)
        }
    }
}
