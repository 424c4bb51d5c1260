import BLAS

// The detector's layers as forward/backward pairs over flat buffers with explicit dimensions (llm.c
// style). Images are channel-major [C, H, W]; a batch of feature vectors is row-major [B, F]. Every
// kernel here is single-threaded: the network runs whole shards of the batch on the worker pool and
// calls these (and single-threaded BLAS) inside each shard. Backward kernels *accumulate* into weight
// gradients and *overwrite* input gradients, as documented per function.

/// 3×3 convolution, stride 1, zero padding 1: out[co, y, x] = b[co] + Σ_{ci,ky,kx} w[co, ci, ky, kx] · x[ci, y+ky−1, x+kx−1].
/// Weights are [Cout, Cin·9] row-major (PyTorch's [Cout, Cin, 3, 3]).
public enum Conv3x3 {
    /// col[(ci·9 + ky·3 + kx), y·W + x] = x[ci, y+ky−1, x+kx−1] (0 outside): [Cin·9, H·W].
    public static func im2col<T: Scalar>(_ x: UnsafePointer<T>, channels c: Int, height h: Int, width w: Int,
                                         into col: UnsafeMutablePointer<T>) {
        let hw = h * w
        for ci in 0..<c {
            let plane = x + ci * hw
            for ky in 0..<3 {
                for kx in 0..<3 {
                    let row = col + ((ci * 9 + ky * 3 + kx) * hw)
                    let x0 = max(0, 1 - kx), x1 = min(w, w + 1 - kx)   // output columns whose source is inside
                    for y in 0..<h {
                        let sy = y + ky - 1
                        let dst = row + y * w
                        if sy < 0 || sy >= h {
                            dst.update(repeating: 0, count: w)
                            continue
                        }
                        if x0 > 0 { dst[0] = 0 }
                        if x1 < w { dst[w - 1] = 0 }
                        (dst + x0).update(from: plane + sy * w + x0 + kx - 1, count: x1 - x0)
                    }
                }
            }
        }
    }

    /// The adjoint of `im2col`: dx[ci, y+ky−1, x+kx−1] += col[(ci·9 + ky·3 + kx), y·W + x] (dx is not cleared).
    public static func col2imAdd<T: Scalar>(_ col: UnsafePointer<T>, channels c: Int, height h: Int, width w: Int,
                                            into dx: UnsafeMutablePointer<T>) {
        let hw = h * w
        for ci in 0..<c {
            let plane = dx + ci * hw
            for ky in 0..<3 {
                for kx in 0..<3 {
                    let row = col + ((ci * 9 + ky * 3 + kx) * hw)
                    let x0 = max(0, 1 - kx), x1 = min(w, w + 1 - kx)
                    for y in 0..<h {
                        let sy = y + ky - 1
                        if sy < 0 || sy >= h { continue }
                        let src = row + y * w + x0
                        let dst = plane + sy * w + x0 + kx - 1
                        for i in 0..<(x1 - x0) { dst[i] += src[i] }
                    }
                }
            }
        }
    }

    /// out [Cout, H·W] = w [Cout, Cin·9] · im2col(x) + b (no bias when nil). `col` is scratch of Cin·9·H·W elements.
    public static func forward<T: Scalar>(x: UnsafePointer<T>, cin: Int, height h: Int, width w: Int,
                                          weight: UnsafePointer<T>, bias: UnsafePointer<T>?, cout: Int,
                                          out: UnsafeMutablePointer<T>, col: UnsafeMutablePointer<T>) {
        let hw = h * w, k = cin * 9
        im2col(x, channels: cin, height: h, width: w, into: col)
        for co in 0..<cout { (out + co * hw).update(repeating: bias?[co] ?? 0, count: hw) }
        T.gemm(transA: false, transB: false, m: cout, n: hw, k: k, alpha: 1, a: weight, lda: k,
               b: col, ldb: hw, beta: 1, c: out, ldc: hw)
    }

    /// Given dout [Cout, H·W]: dw += dout · im2col(x)ᵀ, db += Σ_pixels dout (when given), and, when `dx` is given,
    /// dx = col2im(wᵀ · dout) (overwritten). `col` is scratch as in `forward` (its contents are replaced).
    public static func backward<T: Scalar>(dout: UnsafePointer<T>, x: UnsafePointer<T>, cin: Int, height h: Int, width w: Int,
                                           weight: UnsafePointer<T>, cout: Int,
                                           dweight: UnsafeMutablePointer<T>, dbias: UnsafeMutablePointer<T>?,
                                           dx: UnsafeMutablePointer<T>?, col: UnsafeMutablePointer<T>) {
        let hw = h * w, k = cin * 9
        if let dbias { for co in 0..<cout {
            let r = dout + co * hw
            var s: T = 0
            for i in 0..<hw { s += r[i] }
            dbias[co] += s
        } }
        im2col(x, channels: cin, height: h, width: w, into: col)
        T.gemm(transA: false, transB: true, m: cout, n: k, k: hw, alpha: 1, a: dout, lda: hw,
               b: col, ldb: hw, beta: 1, c: dweight, ldc: k)
        guard let dx else { return }
        T.gemm(transA: true, transB: false, m: k, n: hw, k: cout, alpha: 1, a: weight, lda: k,
               b: dout, ldb: hw, beta: 0, c: col, ldc: hw)
        dx.update(repeating: 0, count: cin * hw)
        col2imAdd(col, channels: cin, height: h, width: w, into: dx)
    }
}

/// max(x, 0), in place; the backward pass masks the gradient with the stored output.
public enum ReLU {
    public static func forward<T: Scalar>(_ x: UnsafeMutablePointer<T>, count n: Int) {
        for i in 0..<n { x[i] = max(x[i], 0) }
    }

    /// d[i] = 0 where out[i] ≤ 0 (out is the ReLU's output), in place.
    public static func backward<T: Scalar>(_ d: UnsafeMutablePointer<T>, output out: UnsafePointer<T>, count n: Int) {
        for i in 0..<n where !(out[i] > 0) { d[i] = 0 }
    }
}

/// 2×2 max-pool, stride 2 (H, W even): out[c, i, j] = max of x[c, 2i…2i+1, 2j…2j+1]; `argmax` keeps the
/// flat index into x of the winner (the first one on ties) for the backward pass.
public enum MaxPool2x2 {
    public static func forward<T: Scalar>(_ x: UnsafePointer<T>, channels c: Int, height h: Int, width w: Int,
                                          out: UnsafeMutablePointer<T>, argmax: UnsafeMutablePointer<Int32>) {
        let oh = h / 2, ow = w / 2
        for ci in 0..<c {
            for i in 0..<oh {
                for j in 0..<ow {
                    let base = (ci * h + 2 * i) * w + 2 * j
                    var best = base, v = x[base]
                    if x[base + 1] > v { v = x[base + 1]; best = base + 1 }
                    if x[base + w] > v { v = x[base + w]; best = base + w }
                    if x[base + w + 1] > v { v = x[base + w + 1]; best = base + w + 1 }
                    let o = (ci * oh + i) * ow + j
                    out[o] = v
                    argmax[o] = Int32(best)
                }
            }
        }
    }

    /// dx = 0 except dx[argmax[o]] = dout[o] (overwritten; the windows do not overlap).
    public static func backward<T: Scalar>(dout: UnsafePointer<T>, argmax: UnsafePointer<Int32>, outputCount n: Int,
                                           dx: UnsafeMutablePointer<T>, inputCount: Int) {
        dx.update(repeating: 0, count: inputCount)
        for o in 0..<n { dx[Int(argmax[o])] += dout[o] }
    }
}

/// y [B, out] = x [B, in] · wᵀ + b, w [out, in] row-major (PyTorch's nn.Linear).
public enum Linear {
    public static func forward<T: Scalar>(x: UnsafePointer<T>, rows b: Int, inFeatures fin: Int,
                                          weight: UnsafePointer<T>, bias: UnsafePointer<T>, outFeatures fout: Int,
                                          out: UnsafeMutablePointer<T>) {
        for r in 0..<b { (out + r * fout).update(from: bias, count: fout) }
        T.gemm(transA: false, transB: true, m: b, n: fout, k: fin, alpha: 1, a: x, lda: fin,
               b: weight, ldb: fin, beta: 1, c: out, ldc: fout)
    }

    /// dw += doutᵀ · x, db += Σ_rows dout, and dx = dout · w (overwritten) when given.
    public static func backward<T: Scalar>(dout: UnsafePointer<T>, x: UnsafePointer<T>, rows b: Int, inFeatures fin: Int,
                                           weight: UnsafePointer<T>, outFeatures fout: Int,
                                           dweight: UnsafeMutablePointer<T>, dbias: UnsafeMutablePointer<T>,
                                           dx: UnsafeMutablePointer<T>?) {
        for r in 0..<b { for o in 0..<fout { dbias[o] += dout[r * fout + o] } }
        T.gemm(transA: true, transB: false, m: fout, n: fin, k: b, alpha: 1, a: dout, lda: fout,
               b: x, ldb: fin, beta: 1, c: dweight, ldc: fin)
        if let dx {
            T.gemm(transA: false, transB: false, m: b, n: fin, k: fout, alpha: 1, a: dout, lda: fout,
                   b: weight, ldb: fin, beta: 0, c: dx, ldc: fin)
        }
    }
}

/// Softmax cross-entropy on one row of logits.
public enum SoftmaxCrossEntropy {
    /// Softmax of logits[0..<n] into probs (max-subtracted; libm exp for accuracy).
    public static func softmax<T: Scalar>(_ logits: UnsafePointer<T>, count n: Int, into probs: UnsafeMutablePointer<T>) {
        var m = logits[0]
        for i in 1..<n { m = max(m, logits[i]) }
        var s: T = 0
        for i in 0..<n {
            let e = T.exp(logits[i] - m)
            probs[i] = e
            s += e
        }
        let inv = 1 / s
        for i in 0..<n { probs[i] *= inv }
    }

    /// Returns −log softmax(logits)[label] and writes dlogits = scale · (softmax − onehot(label)).
    public static func forwardBackward<T: Scalar>(_ logits: UnsafePointer<T>, count n: Int, label: Int, scale: T,
                                                  dlogits: UnsafeMutablePointer<T>) -> Double {
        precondition(label >= 0 && label < n)
        var m = logits[0]
        for i in 1..<n { m = max(m, logits[i]) }
        var s: T = 0
        for i in 0..<n { s += T.exp(logits[i] - m) }
        let logZ = m + T.log(s)
        for i in 0..<n { dlogits[i] = scale * T.exp(logits[i] - logZ) }
        dlogits[label] -= scale
        return Double(logZ - logits[label])
    }
}

/// Group normalisation of one image (Wu & He 2018): the C channels form G groups of C/G channels; each
/// group is standardised over its channels and pixels, then scaled and shifted per channel:
/// y[c, p] = γ[c] · (x[c, p] − μ_g) / √(σ²_g + ε) + β[c] (σ² the biased variance). Per image, so training
/// and inference compute the same function and no batch statistics are needed.
public enum GroupNorm {
    public static let epsilon = 1e-5

    /// stats[2g] = μ_g, stats[2g + 1] = 1/√(σ²_g + ε).
    public static func forward<T: Scalar>(_ x: UnsafePointer<T>, channels c: Int, pixels hw: Int, groups g: Int,
                                          gamma: UnsafePointer<T>, beta: UnsafePointer<T>,
                                          out: UnsafeMutablePointer<T>, stats: UnsafeMutablePointer<T>) {
        let cpg = c / g, n = cpg * hw
        for gi in 0..<g {
            let base = x + gi * n
            var s: T = 0
            for i in 0..<n { s += base[i] }
            let mean = s / T(n)
            var v: T = 0
            for i in 0..<n { let d = base[i] - mean; v += d * d }
            let rstd = 1 / (v / T(n) + T(epsilon)).squareRoot()
            stats[2 * gi] = mean
            stats[2 * gi + 1] = rstd
            for ci in (gi * cpg)..<((gi + 1) * cpg) {
                let a = gamma[ci] * rstd, b = beta[ci] - mean * a
                let src = x + ci * hw, dst = out + ci * hw
                for i in 0..<hw { dst[i] = src[i] * a + b }
            }
        }
    }

    /// Given dout: dγ += Σ dout·x̂, dβ += Σ dout, and dx = rstd·(γ·dout − mean(γ·dout) − x̂·mean(γ·dout·x̂))
    /// (means over the group; dx overwritten, and it may be the same memory as dout).
    public static func backward<T: Scalar>(dout: UnsafePointer<T>, x: UnsafePointer<T>, stats: UnsafePointer<T>,
                                           channels c: Int, pixels hw: Int, groups g: Int, gamma: UnsafePointer<T>,
                                           dgamma: UnsafeMutablePointer<T>, dbeta: UnsafeMutablePointer<T>,
                                           dx: UnsafeMutablePointer<T>) {
        let cpg = c / g, n = cpg * hw
        for gi in 0..<g {
            let mean = stats[2 * gi], rstd = stats[2 * gi + 1]
            var sumD: T = 0, sumDX: T = 0
            for ci in (gi * cpg)..<((gi + 1) * cpg) {
                let d = dout + ci * hw, xs = x + ci * hw
                var sd: T = 0, sdx: T = 0
                for i in 0..<hw {
                    let xh = (xs[i] - mean) * rstd
                    sd += d[i]
                    sdx += d[i] * xh
                }
                dgamma[ci] += sdx
                dbeta[ci] += sd
                sumD += gamma[ci] * sd
                sumDX += gamma[ci] * sdx
            }
            let mD = sumD / T(n), mDX = sumDX / T(n)
            for ci in (gi * cpg)..<((gi + 1) * cpg) {
                let d = dout + ci * hw, xs = x + ci * hw, o = dx + ci * hw
                let gm = gamma[ci]
                for i in 0..<hw {
                    let xh = (xs[i] - mean) * rstd
                    o[i] = rstd * (gm * d[i] - mD - xh * mDX)
                }
            }
        }
    }
}
