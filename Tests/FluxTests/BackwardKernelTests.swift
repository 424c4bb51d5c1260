@testable import Flux
import BLAS
import Foundation
import XCTest

/// Every backward kernel against central finite differences of its forward kernel, in Double.
final class BackwardKernelTests: XCTestCase {
    var rng = SplitMix64(seed: 7)

    func randn(_ n: Int, scale: Double = 1) -> Buffer<Double> { Buffer((0..<n).map { _ in rng.normal() * scale }) }

    /// Checks d⟨w, f(x)⟩/dx from `analytic` against central differences for every element of x.
    func checkFD(_ x: Buffer<Double>, outCount: Int, _ f: (Buffer<Double>) -> Buffer<Double>, analytic: Buffer<Double>,
                 _ what: String, h: Double = 1e-6, tol: Double = 1e-7, weights w: Buffer<Double>) {
        var maxErr = 0.0, maxG = 0.0
        for i in 0..<x.count {
            let keep = x[i]
            x[i] = keep + h
            let fp = f(x)
            x[i] = keep - h
            let fm = f(x)
            x[i] = keep
            var num = 0.0
            for j in 0..<outCount { num += w[j] * (fp[j] - fm[j]) }
            num /= 2 * h
            maxErr = max(maxErr, abs(num - analytic[i]))
            maxG = max(maxG, abs(num))
        }
        XCTAssertGreaterThan(maxG, 0, what)
        XCTAssertLessThanOrEqual(maxErr, tol * max(1, maxG), "\(what): max FD error \(maxErr), max grad \(maxG)")
    }

    func testLinear() {
        let rows = 3, i = 5, o = 4
        let x = randn(rows * i), w = randn(o * i), b = randn(o), wy = randn(rows * o)
        func f(_ x: Buffer<Double>, _ w: Buffer<Double>, _ b: Buffer<Double>) -> Buffer<Double> {
            let y = Buffer<Double>(uninitialized: rows * o)
            linearForward(y.p, x.p, w.p, b.p, rows: rows, inDim: i, outDim: o)
            return y
        }
        let dx = Buffer<Double>.zeros(rows * i), dW = Buffer<Double>.zeros(o * i), db = Buffer<Double>.zeros(o)
        linearBackward(dx: dx.p, dW: dW.p, db: db.p, dy: wy.p, x: x.p, w: w.p, rows: rows, inDim: i, outDim: o)
        checkFD(x, outCount: rows * o, { f($0, w, b) }, analytic: dx, "linear dx", weights: wy)
        checkFD(w, outCount: rows * o, { f(x, $0, b) }, analytic: dW, "linear dW", weights: wy)
        checkFD(b, outCount: rows * o, { f(x, w, $0) }, analytic: db, "linear db", weights: wy)
    }

    func testAdaNormAndGatedResidual() {
        let L = 3, B = 2, C = 6, rows = B * L, stride = 9
        let x = randn(rows * C), mod = randn(B * stride, scale: 0.5), wy = randn(rows * C)
        func f(_ x: Buffer<Double>, _ mod: Buffer<Double>) -> Buffer<Double> {
            let y = Buffer<Double>(uninitialized: rows * C)
            adaNormForward(y.p, x.p, shift: mod.p, scale: mod.p + 1, modStride: stride, rows: rows, tokensPerSample: L, C: C)
            return y
        }
        let mean = Buffer<Double>(uninitialized: rows), rstd = Buffer<Double>(uninitialized: rows)
        let y = Buffer<Double>(uninitialized: rows * C)
        adaNormForward(y.p, x.p, shift: mod.p, scale: mod.p + 1, modStride: stride, rows: rows, tokensPerSample: L, C: C,
                       mean: mean.p, rstd: rstd.p)
        let dx = Buffer<Double>.zeros(rows * C), dmod = Buffer<Double>.zeros(B * stride)
        // shift at offset 0, scale at offset 1 (overlapping on purpose: both gradients must add up)
        let dsh = Buffer<Double>.zeros(B * stride), dsc = Buffer<Double>.zeros(B * stride)
        adaNormBackward(dx: dx.p, dshift: dsh.p, dscale: dsc.p + 1, dmodStride: stride, dout: wy.p, x: x.p, mean: mean.p,
                        rstd: rstd.p, scale: mod.p + 1, modStride: stride, rows: rows, tokensPerSample: L, C: C)
        for k in 0..<(B * stride) { dmod[k] = dsh[k] + dsc[k] }
        checkFD(x, outCount: rows * C, { f($0, mod) }, analytic: dx, "adaNorm dx", weights: wy)
        checkFD(mod, outCount: rows * C, { f(x, $0) }, analytic: dmod, "adaNorm dshift/dscale", weights: wy)

        // Gated residual h + g⊙f.
        let h = randn(rows * C), fv = randn(rows * C)
        func g(_ fv: Buffer<Double>, _ mod: Buffer<Double>) -> Buffer<Double> {
            let out = h.copy()
            gatedResidualForward(out.p, fv.p, gate: mod.p + 2, modStride: stride, rows: rows, tokensPerSample: L, C: C)
            return out
        }
        let dgate = Buffer<Double>.zeros(B * stride), df = Buffer<Double>.zeros(rows * C)
        gatedResidualBackward(dgate: dgate.p + 2, dmodStride: stride, df: df.p, dh: wy.p, f: fv.p, gate: mod.p + 2,
                              modStride: stride, rows: rows, tokensPerSample: L, C: C)
        checkFD(fv, outCount: rows * C, { g($0, mod) }, analytic: df, "gated residual df", weights: wy)
        checkFD(mod, outCount: rows * C, { g(fv, $0) }, analytic: dgate, "gated residual dgate", weights: wy)
    }

    func testActivations() {
        let n = 40
        let x = randn(n, scale: 2), wy = randn(n)
        let dg = wy.copy()
        geluBackward(dg.p, ld: n, pre: x.p, ldp: n, rows: 1, cols: n)
        checkFD(x, outCount: n, { x in
            let y = Buffer<Double>(uninitialized: n)
            geluForward(y.p, ldo: n, x.p, ldx: n, rows: 1, cols: n)
            return y
        }, analytic: dg, "gelu", weights: wy)
        let ds = Buffer<Double>.zeros(n)
        siluBackward(dx: ds.p, dy: wy.p, x: x.p, count: n)
        checkFD(x, outCount: n, { x in
            let y = Buffer<Double>(uninitialized: n)
            siluForward(y.p, x.p, count: n)
            return y
        }, analytic: ds, "silu", weights: wy)
    }

    func testRMSNormAndRoPE() {
        let rows = 4, H = 2, D = 6, ld = 15   // a column slice of a wider buffer
        let x = randn(rows * ld), w = randn(D, scale: 0.3), wy = randn(rows * ld)
        for k in 0..<D { w[k] += 1 }
        for r in 0..<rows { for c in (H * D)..<ld { wy[r * ld + c] = 0 } }
        func f(_ x: Buffer<Double>, _ w: Buffer<Double>) -> Buffer<Double> {
            let y = x.copy()
            rmsNormHeadsForward(y.p, ld: ld, w: w.p, rows: rows, heads: H, D: D)
            return y
        }
        let rr = Buffer<Double>(uninitialized: rows * H)
        let y = x.copy()
        rmsNormHeadsForward(y.p, ld: ld, w: w.p, rows: rows, heads: H, D: D, rrms: rr.p)
        let dx = wy.copy(), dw = Buffer<Double>.zeros(D)
        rmsNormHeadsBackward(dx.p, ld: ld, x: x.p, ldx: ld, rrms: rr.p, w: w.p, dw: dw.p, rows: rows, heads: H, D: D)
        for r in 0..<rows { for c in (H * D)..<ld { dx[r * ld + c] = 0 } }
        checkFD(x, outCount: rows * ld, { f($0, w) }, analytic: dx, "rmsnorm dx", weights: wy)
        checkFD(w, outCount: rows * ld, { f(x, $0) }, analytic: dw, "rmsnorm dw", weights: wy)

        let S = 2   // rows = B·S with B = 2
        let tables = RopeTables<Double>(ids: (0..<(S * 3)).map { _ in rng.normal() * 3 }, S: S, axesDims: [2, 2, 2])
        let dr = wy.copy()
        ropeBackward(dr.p, ld: ld, cos: tables.cos.p, sin: tables.sin.p, rows: rows, S: S, heads: H, D: D)
        for r in 0..<rows { for c in (H * D)..<ld { dr[r * ld + c] = 0 } }
        checkFD(x, outCount: rows * ld, { x in
            let y = x.copy()
            ropeForward(y.p, ld: ld, cos: tables.cos.p, sin: tables.sin.p, rows: rows, S: S, heads: H, D: D)
            return y
        }, analytic: dr, "rope", weights: wy)
    }

    func testAttention() {
        let B = 2, S = 5, H = 2, D = 4, ld = 3 * H * D, dim = H * D
        let qkv = randn(B * S * ld), wy = randn(B * S * dim)
        func f(_ qkv: Buffer<Double>) -> Buffer<Double> {
            let o = Buffer<Double>(uninitialized: B * S * dim)
            attentionForward(o.p, ldo: dim, q: qkv.p, k: qkv.p + dim, v: qkv.p + 2 * dim, ld: ld, B: B, S: S, heads: H, D: D)
            return o
        }
        let probs = Buffer<Double>(uninitialized: B * H * S * S)
        let o = Buffer<Double>(uninitialized: B * S * dim)
        attentionForward(o.p, ldo: dim, q: qkv.p, k: qkv.p + dim, v: qkv.p + 2 * dim, ld: ld, B: B, S: S, heads: H, D: D, probs: probs.p)
        XCTAssertEqual(o.array, f(qkv).array, "probs or not, the same output")
        let g = Buffer<Double>(uninitialized: B * S * ld)
        attentionBackward(dq: g.p, dk: g.p + dim, dv: g.p + 2 * dim, ldg: ld, dO: wy.p, ldo: dim, q: qkv.p, k: qkv.p + dim,
                          v: qkv.p + 2 * dim, ld: ld, probs: probs.p, B: B, S: S, heads: H, D: D)
        checkFD(qkv, outCount: B * S * dim, f, analytic: g, "attention dq/dk/dv", weights: wy)
    }

    func testMasks() {
        let rows = 3, H = 2, D = 3, cols = H * D
        let x = randn(rows * cols), m = randn(cols), mh = randn(H), wy = randn(rows * cols)
        let dm = Buffer<Double>.zeros(cols), dx = wy.copy()
        scaleColumnsBackward(dx.p, ld: cols, x: x.p, ldx: cols, mask: m.p, dmask: dm.p, rows: rows, cols: cols)
        func fc(_ x: Buffer<Double>, _ m: Buffer<Double>) -> Buffer<Double> {
            let y = x.copy()
            scaleColumns(y.p, ld: cols, rows: rows, cols: cols, by: m.p)
            return y
        }
        checkFD(x, outCount: rows * cols, { fc($0, m) }, analytic: dx, "column mask dx", weights: wy)
        checkFD(m, outCount: rows * cols, { fc(x, $0) }, analytic: dm, "column mask dm", weights: wy)
        let dmh = Buffer<Double>.zeros(H), dxh = wy.copy()
        scaleHeadsBackward(dxh.p, ld: cols, x: x.p, ldx: cols, mask: mh.p, dmask: dmh.p, rows: rows, heads: H, D: D)
        func fh(_ x: Buffer<Double>, _ m: Buffer<Double>) -> Buffer<Double> {
            let y = x.copy()
            scaleHeads(y.p, ld: cols, rows: rows, heads: H, D: D, by: m.p)
            return y
        }
        checkFD(x, outCount: rows * cols, { fh($0, mh) }, analytic: dxh, "head mask dx", weights: wy)
        checkFD(mh, outCount: rows * cols, { fh(x, $0) }, analytic: dmh, "head mask dm", weights: wy)
    }

    /// Weight gradients of a whole transformer call (not covered by the autograd fixture) by finite differences
    /// on a few entries of every tensor, batch 2, with guidance and masks.
    func testWeightGradientsOfWholeModel() throws {
        let cfg = FluxConfig(inChannels: 4, numLayers: 1, numSingleLayers: 1, attentionHeadDim: 4, numAttentionHeads: 2,
                             jointAttentionDim: 6, pooledProjectionDim: 5, guidanceEmbeds: true, axesDimsRope: [2, 2])
        let weights = FluxWeights<Double>.random(config: cfg, seed: 3)
        let model = FluxTransformer(weights: weights)
        let B = 2, Lt = 3, gh = 2, gw = 2, Li = gh * gw
        let ids = (0..<(Li * 2)).map { Double($0 % 3) }
        let cond = try FluxConditioning<Double>(config: cfg, batch: B, encoderHiddenStates: randn(B * Lt * 6),
                                                pooledProjections: randn(B * 5), guidance: [3.5, 2.0],
                                                txtIds: [Double](repeating: 0, count: Lt * 2), imgIds: ids)
        var masks = MaskSet<Double>()
        masks[MaskSite(.ff, block: 0)] = randn(cfg.mlpDim)
        masks[MaskSite(.singleAttn, block: 0)] = randn(2)
        let x = randn(B * Li * 4), wy = randn(B * Li * 4)
        let grads = FluxGradients<Double>(config: cfg, batch: B, textTokens: Lt, imageTokens: Li, maskSites: [], weights: true)
        _ = try model.vjp(hidden: x.p, sigma: [0.3, 0.8], cond: cond, masks: masks, dOut: wy.p, grads: grads)
        func objective() throws -> Double {
            let y = try model.forward(hidden: x.p, sigma: [0.3, 0.8], cond: cond, masks: masks)
            return (0..<y.count).reduce(0) { $0 + y[$1] * wy[$1] }
        }
        let params = weights.allBuffers, gparams = grads.weights!.allBuffers
        XCTAssertEqual(params.count, gparams.count)
        var checked = 0
        for (p, g) in zip(params, gparams) {
            for k in Set([0, p.count / 2, p.count - 1]) {
                let keep = p[k], h = 1e-6
                p[k] = keep + h
                let fp = try objective()
                p[k] = keep - h
                let fm = try objective()
                p[k] = keep
                let num = (fp - fm) / (2 * h)
                XCTAssertEqual(g[k], num, accuracy: 1e-6 * max(1, abs(num)), "weight gradient #\(checked)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 90)
    }
}
