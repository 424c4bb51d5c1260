import BLAS

// Backward kernels, one per forward kernel in Kernels.swift (llm.c style). Each takes the forward's saved
// values and the gradient of its output, and ACCUMULATES (+=) into the gradient buffers of its inputs, so
// a value used in several places (the residual stream, the conditioning vector) sums its gradients.
// Formulas: flux.md §7.8; every kernel is checked against central finite differences in the tests.

/// Linear y = x·Wᵀ + b of a model's layer: `linearBackward` below, with the products in the layer's mode (bf16:
/// dx through W packed once, dW from bf16 operands, both accumulated in f32).
func linearBackward<T: Scalar>(
    dx: UnsafeMutablePointer<T>?, ldx: Int? = nil, dW: UnsafeMutablePointer<T>?, db: UnsafeMutablePointer<T>?,
    dy: UnsafePointer<T>, ldy: Int? = nil, x: UnsafePointer<T>?, ldxIn: Int? = nil, w: LinearWeights<T>,
    rows: Int, inDim: Int, outDim: Int
) {
    guard let pack = w.bf16Pack(backward: true) else {
        linearBackward(dx: dx, ldx: ldx, dW: dW, db: db, dy: dy, ldy: ldy, x: x, ldxIn: ldxIn, w: w.w.p,
                       rows: rows, inDim: inDim, outDim: outDim)
        return
    }
    if let dx { pack.product(m: rows, a: float(dy), lda: ldy ?? outDim, c: floatMut(dx), ldc: ldx ?? inDim, bias: nil, accumulate: true) }
    linearBackward(dx: nil, dW: dW, db: db, dy: dy, ldy: ldy, x: x, ldxIn: ldxIn, w: w.w.p, rows: rows, inDim: inDim,
                   outDim: outDim, mode: .bf16)
}

/// Linear y = x·Wᵀ + b. dx += dy·W; optionally dW += dyᵀ·x and db += Σ_rows dy.
func linearBackward<T: Scalar>(
    dx: UnsafeMutablePointer<T>?, ldx: Int? = nil, dW: UnsafeMutablePointer<T>?, db: UnsafeMutablePointer<T>?,
    dy: UnsafePointer<T>, ldy: Int? = nil, x: UnsafePointer<T>?, ldxIn: Int? = nil, w: UnsafePointer<T>,
    rows: Int, inDim: Int, outDim: Int, mode: MatmulMode = .f32
) {
    let ldy = ldy ?? outDim
    if let dx {
        Gemm.run(mode: mode, m: rows, n: inDim, k: outDim, a: dy, lda: ldy, b: w, ldb: inDim, beta: 1, c: dx, ldc: ldx ?? inDim)
    }
    if let dW, let x {
        Gemm.run(mode: mode, transA: true, m: outDim, n: inDim, k: rows, a: dy, lda: ldy, b: x, ldb: ldxIn ?? inDim, beta: 1,
                 c: dW, ldc: inDim)
    }
    if let db {
        // Columns split over workers; each sums its columns over all rows.
        Parallel.forEachChunk(outDim, workPerItem: rows) { cols in
            for r in 0..<rows {
                let g = dy + r * ldy
                for o in cols { db[o] += g[o] }
            }
        }
    }
}

/// out = LN(x)·(1 + scale) + shift. Accumulates dx, and per sample dshift = Σ_tok dout, dscale = Σ_tok dout·n.
/// mean/rstd are the forward's per-row statistics.
func adaNormBackward<T: Scalar>(
    dx: UnsafeMutablePointer<T>, dshift: UnsafeMutablePointer<T>, dscale: UnsafeMutablePointer<T>, dmodStride: Int,
    dout: UnsafePointer<T>, x: UnsafePointer<T>, mean: UnsafePointer<T>, rstd: UnsafePointer<T>,
    scale: UnsafePointer<T>, modStride: Int, rows: Int, tokensPerSample: Int, C: Int
) {
    let invC = 1 / T(C)
    let samples = rows / tokensPerSample
    // Per-sample sums are reduced per sample (one writer each), the row-local dx in parallel.
    Parallel.forEachChunk(samples, workPerItem: tokensPerSample * C * 6) { range in
        let dn = UnsafeMutablePointer<T>.allocate(capacity: C)
        defer { dn.deallocate() }
        for s in range {
            let sc = scale + s * modStride
            let dsh = dshift + s * dmodStride, dsc = dscale + s * dmodStride
            for t in 0..<tokensPerSample {
                let r = s * tokensPerSample + t
                let xr = x + r * C, g = dout + r * C, dxr = dx + r * C
                let m = mean[r], rs = rstd[r]
                var sumDn: T = 0, sumDnN: T = 0
                for c in 0..<C {
                    let n = (xr[c] - m) * rs
                    dsh[c] += g[c]
                    dsc[c] += g[c] * n
                    let d = g[c] * (1 + sc[c])
                    dn[c] = d
                    sumDn += d
                    sumDnN += d * n
                }
                let mDn = sumDn * invC, mDnN = sumDnN * invC
                for c in 0..<C {
                    let n = (xr[c] - m) * rs
                    dxr[c] += rs * (dn[c] - mDn - n * mDnN)
                }
            }
        }
    }
}

/// h' = h + gate ⊙ f. dh' passes to dh unchanged (the caller keeps using it); dgate += Σ_tok dh'·f and
/// df = gate·dh' (overwritten, row stride lddf).
func gatedResidualBackward<T: Scalar>(
    dgate: UnsafeMutablePointer<T>, dmodStride: Int, df: UnsafeMutablePointer<T>, lddf: Int? = nil,
    dh: UnsafePointer<T>, f: UnsafePointer<T>, ldf: Int? = nil, gate: UnsafePointer<T>, modStride: Int,
    rows: Int, tokensPerSample: Int, C: Int
) {
    let lddf = lddf ?? C, ldf = ldf ?? C
    let samples = rows / tokensPerSample
    Parallel.forEachChunk(samples, workPerItem: tokensPerSample * C * 3) { range in
        for s in range {
            let g = gate + s * modStride, dg = dgate + s * dmodStride
            for t in 0..<tokensPerSample {
                let r = s * tokensPerSample + t
                let dhr = dh + r * C, fr = f + r * ldf, dfr = df + r * lddf
                for c in 0..<C {
                    dg[c] += dhr[c] * fr[c]
                    dfr[c] = g[c] * dhr[c]
                }
            }
        }
    }
}

@inline(__always)
func geluTanhDerivative<T: Scalar>(_ x: T) -> T {
    // d/dx [x·σ(2u)] = σ(2u) + x·2u'·σ(2u)(1 − σ(2u)), u = k(x + 0.044715x³), u' = k(1 + 3·0.044715x²).
    let k = T(0.7978845608028654), a = T(0.044715)
    let u = k * (x + a * x * x * x)
    let s = 1 / (1 + T.fastExp(-2 * u))
    return s + x * 2 * k * (1 + 3 * a * x * x) * s * (1 - s)
}

/// d(input) = d(output)·GELU′(pre) for `cols` columns per row, in place on dy (row stride ld; pre's ldp).
func geluBackward<T: Scalar>(_ dy: UnsafeMutablePointer<T>, ld: Int, pre: UnsafePointer<T>, ldp: Int, rows: Int, cols: Int) {
    Parallel.forEachChunk(rows, workPerItem: 10 * cols) { range in
        for r in range {
            let g = dy + r * ld, u = pre + r * ldp
            for c in 0..<cols { g[c] *= geluTanhDerivative(u[c]) }
        }
    }
}

/// dx += dy·SiLU′(x), SiLU′ = σ(x)(1 + x(1 − σ(x))).
func siluBackward<T: Scalar>(dx: UnsafeMutablePointer<T>, dy: UnsafePointer<T>, x: UnsafePointer<T>, count: Int) {
    for i in 0..<count {
        let s = 1 / (1 + T.fastExp(-x[i]))
        dx[i] += dy[i] * s * (1 + x[i] * (1 - s))
    }
}

/// Per-head RMSNorm y = x·r·w, r = (mean(x²)+eps)^−½. dy is overwritten with dx:
/// g = dy·w, dx = r·g − x·r³·mean(g·x). dw += Σ dy·x·r when given. x is the pre-norm input.
func rmsNormHeadsBackward<T: Scalar>(
    _ dy: UnsafeMutablePointer<T>, ld: Int, x: UnsafePointer<T>, ldx: Int, rrms: UnsafePointer<T>,
    w: UnsafePointer<T>, dw: UnsafeMutablePointer<T>?, rows: Int, heads: Int, D: Int
) {
    let invD = 1 / T(D)
    // dw is a reduction over all rows: done serially after the parallel dx pass would need the old dy, so
    // accumulate it first when requested.
    if let dw {
        for r in 0..<rows {
            for h in 0..<heads {
                let g = dy + r * ld + h * D, v = x + r * ldx + h * D, rr = rrms[r * heads + h]
                for d in 0..<D { dw[d] += g[d] * v[d] * rr }
            }
        }
    }
    Parallel.forEachChunk(rows, workPerItem: 5 * heads * D) { range in
        for r in range {
            for h in 0..<heads {
                let g = dy + r * ld + h * D, v = x + r * ldx + h * D, rr = rrms[r * heads + h]
                var s: T = 0
                for d in 0..<D { s += g[d] * w[d] * v[d] }
                let k = s * invD * rr * rr * rr
                for d in 0..<D { g[d] = rr * g[d] * w[d] - v[d] * k }
            }
        }
    }
}

/// RoPE backward: rotate the gradient by −θ, in place.
func ropeBackward<T: Scalar>(
    _ g: UnsafeMutablePointer<T>, ld: Int, cos: UnsafePointer<T>, sin: UnsafePointer<T>,
    rows: Int, S: Int, heads: Int, D: Int
) {
    Parallel.forEachChunk(rows, workPerItem: 3 * heads * D) { range in
        for r in range {
            let cr = cos + (r % S) * D, sr = sin + (r % S) * D
            for h in 0..<heads {
                let v = g + r * ld + h * D
                var m = 0
                while m < D {
                    let a = v[m], b = v[m + 1]
                    v[m] = a * cr[m] + b * sr[m + 1]
                    v[m + 1] = -a * sr[m] + b * cr[m + 1]
                    m += 2
                }
            }
        }
    }
}

/// Attention backward per (sample, head), with the forward's probabilities P [B, H, S, S]:
/// dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS K/√D, dK = dSᵀ Q/√D.
/// dq/dk/dv are written (not accumulated) with row stride ldg.
func attentionBackward<T: Scalar>(
    dq: UnsafeMutablePointer<T>, dk: UnsafeMutablePointer<T>, dv: UnsafeMutablePointer<T>, ldg: Int,
    dO: UnsafePointer<T>, ldo: Int, q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>, ld: Int,
    probs: UnsafePointer<T>, B: Int, S: Int, heads: Int, D: Int, mode: MatmulMode = .f32
) {
    let scale = 1 / T(D).squareRoot()
    BLASThreads.configureOnce()
    Parallel.forEachChunk(B * heads, workPerItem: 8 * S * S * D) { range in
        let dp = UnsafeMutablePointer<T>.allocate(capacity: S * S)
        defer { dp.deallocate() }
        for job in range {
            let b = job / heads, h = job % heads
            let base = b * S * ld + h * D, gbase = b * S * ldg + h * D, obase = b * S * ldo + h * D
            let p = probs + job * S * S
            // dV = Pᵀ·dO
            Gemm.single(mode: mode, transA: true, transB: false, m: S, n: D, k: S, alpha: 1, a: p, lda: S, b: dO + obase, ldb: ldo,
                   beta: 0, c: dv + gbase, ldc: ldg)
            // dP = dO·Vᵀ
            Gemm.single(mode: mode, transA: false, transB: true, m: S, n: S, k: D, alpha: 1, a: dO + obase, lda: ldo, b: v + base, ldb: ld,
                   beta: 0, c: dp, ldc: S)
            for i in 0..<S {
                let pr = p + i * S, dr = dp + i * S
                var s: T = 0
                for j in 0..<S { s += dr[j] * pr[j] }
                for j in 0..<S { dr[j] = pr[j] * (dr[j] - s) }
            }
            // dQ = dS·K·scale, dK = dSᵀ·Q·scale
            Gemm.single(mode: mode, transA: false, transB: false, m: S, n: D, k: S, alpha: scale, a: dp, lda: S, b: k + base, ldb: ld,
                   beta: 0, c: dq + gbase, ldc: ldg)
            Gemm.single(mode: mode, transA: true, transB: false, m: S, n: D, k: S, alpha: scale, a: dp, lda: S, b: q + base, ldb: ld,
                   beta: 0, c: dk + gbase, ldc: ldg)
        }
    }
}

/// Backward of x·mask (columns): dmask += Σ_rows dy·x (x = the value before masking); dy *= mask in place.
func scaleColumnsBackward<T: Scalar>(
    _ dy: UnsafeMutablePointer<T>, ld: Int, x: UnsafePointer<T>, ldx: Int, mask: UnsafePointer<T>,
    dmask: UnsafeMutablePointer<T>?, rows: Int, cols: Int
) {
    if let dmask {
        for r in 0..<rows {
            let g = dy + r * ld, xr = x + r * ldx
            for c in 0..<cols { dmask[c] += g[c] * xr[c] }
        }
    }
    scaleColumns(dy, ld: ld, rows: rows, cols: cols, by: mask)
}

/// Backward of a per-head mask on [rows, H·D]: dmask[h] += Σ dy·x over the head's columns; dy *= mask.
func scaleHeadsBackward<T: Scalar>(
    _ dy: UnsafeMutablePointer<T>, ld: Int, x: UnsafePointer<T>, ldx: Int, mask: UnsafePointer<T>,
    dmask: UnsafeMutablePointer<T>?, rows: Int, heads: Int, D: Int
) {
    if let dmask {
        for r in 0..<rows {
            for h in 0..<heads {
                let g = dy + r * ld + h * D, xr = x + r * ldx + h * D
                var s: T = 0
                for d in 0..<D { s += g[d] * xr[d] }
                dmask[h] += s
            }
        }
    }
    scaleHeads(dy, ld: ld, rows: rows, heads: heads, D: D, by: mask)
}
