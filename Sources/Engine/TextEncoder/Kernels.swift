import BLAS
import Foundation

// Element-wise kernels of the BERT encoder over flat row-major Float buffers (llm.c style: pointers and
// explicit dimensions). Matrix products go through BLAS's `Gemm.run`.

/// y[rows, outDim] = x · Wᵀ + b, with W in PyTorch's [out, in] layout. When `residual` is given,
/// y = residual + x · Wᵀ + b (y may alias residual).
func linear(
    _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    rows: Int, inDim: Int, outDim: Int, residual: UnsafePointer<Float>? = nil
) {
    for r in 0..<rows {
        let yr = y + r * outDim
        if let residual {
            let rr = residual + r * outDim
            for c in 0..<outDim { yr[c] = rr[c] + b[c] }
        } else {
            yr.update(from: b, count: outDim)
        }
    }
    Gemm.run(transA: false, transB: true, m: rows, n: outDim, k: inDim, alpha: 1, a: x, lda: inDim,
             b: w, ldb: inDim, beta: 1, c: y, ldc: outDim)
}

/// In-place LayerNorm with affine weight and bias over the last dimension C, eps as given (BERT: 1e-12).
/// Mean and variance accumulate in Double (the two-pass form), so the result does not depend on C's size.
func layerNorm(_ x: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, rows: Int, C: Int, eps: Double) {
    Parallel.forEachChunk(rows, workPerItem: 6 * C) { range in
        for r in range {
            let v = x + r * C
            var s = 0.0
            for c in 0..<C { s += Double(v[c]) }
            let mean = s / Double(C)
            var q = 0.0
            for c in 0..<C { let d = Double(v[c]) - mean; q += d * d }
            let rstd = Float(1 / (q / Double(C) + eps).squareRoot())
            let m = Float(mean)
            for c in 0..<C { v[c] = (v[c] - m) * rstd * weight[c] + bias[c] }
        }
    }
}

/// In-place GELU with the error function, x·Φ(x) = ½x(1 + erf(x/√2)) (BERT's "gelu", not the tanh
/// approximation). erf is Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, about one float ulp of 1), the
/// same branch-free formula PyTorch's vectorised CPU kernels use; libm's erff is a call per element that
/// made GELU a third of a 250-token forward pass.
func geluErf(_ x: UnsafeMutablePointer<Float>, count: Int) {
    Parallel.forEachChunk(count, workPerItem: 24) { range in
        for i in range {
            let v = x[i]
            x[i] = 0.5 * v * (1 + fastErf(v * 0.70710678118654752))
        }
    }
}

@inline(__always)
func fastErf(_ x: Float) -> Float {
    let a = abs(x)
    let t = 1 / (1 + 0.3275911 * a)
    var r: Float = 1.061405429
    r = r * t - 1.453152027
    r = r * t + 1.421413741
    r = r * t - 0.284496736
    r = r * t + 0.254829592
    let y = 1 - r * t * Float.fastExp(-a * a)
    return x < 0 ? -y : y
}

/// In-place softmax of each of `rows` rows of length n (row stride ld). The max and the sum use four
/// partial accumulators and the exponentials run in a loop of their own, so all three vectorise (a plain
/// `s += e` chain cannot be reordered without fast-math).
@inline(__always)
func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, n: Int, ld: Int) {
    for r in 0..<rows {
        let v = x + r * ld
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0
        var j = 0
        while j + 4 <= n {
            m0 = max(m0, v[j]); m1 = max(m1, v[j + 1]); m2 = max(m2, v[j + 2]); m3 = max(m3, v[j + 3])
            j += 4
        }
        while j < n { m0 = max(m0, v[j]); j += 1 }
        let m = max(max(m0, m1), max(m2, m3))
        for j in 0..<n { v[j] = Float.fastExp(v[j] - m) }
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        j = 0
        while j + 4 <= n {
            s0 += v[j]; s1 += v[j + 1]; s2 += v[j + 2]; s3 += v[j + 3]
            j += 4
        }
        while j < n { s0 += v[j]; j += 1 }
        let inv = 1 / ((s0 + s1) + (s2 + s3))
        for j in 0..<n { v[j] *= inv }
    }
}

/// Multi-head self-attention without a mask (a single unpadded sequence) for T tokens.
/// qkv is [T, 3·H·D] (queries, keys, values side by side, heads contiguous within each); the context
/// (softmax(q·kᵀ·scale)·v, heads concatenated) goes to out [T, H·D]. scratch holds H·T·T floats.
func selfAttention(
    _ out: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>,
    T: Int, heads H: Int, headDim D: Int
) {
    let width = H * D, ld = 3 * width
    let scale = 1 / Float(D).squareRoot()
    Parallel.run(H) { h in
        let scores = scratch + h * T * T
        let q = qkv + h * D, k = qkv + width + h * D, v = qkv + 2 * width + h * D
        // Nested inside Parallel.run, these products run on this worker alone.
        Gemm.run(transA: false, transB: true, m: T, n: T, k: D, alpha: scale, a: q, lda: ld, b: k, ldb: ld,
                 beta: 0, c: scores, ldc: T)
        softmaxRows(scores, rows: T, n: T, ld: T)
        Gemm.run(transA: false, transB: false, m: T, n: D, k: T, alpha: 1, a: scores, lda: T, b: v, ldb: ld,
                 beta: 0, c: out + h * D, ldc: width)
    }
}
