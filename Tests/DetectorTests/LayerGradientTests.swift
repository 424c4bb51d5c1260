import BLAS
import XCTest
@testable import Detector
import World

/// Each layer's backward pass against central finite differences, in Double.
///
/// For a layer y = f(x, θ) the checks use the scalar L = Σ r ⊙ y with a fixed random r, so dL/dy = r is
/// what the backward pass receives, and dL/dθ, dL/dx are compared with (L(θ + h) − L(θ − h)) / 2h.
final class LayerGradientTests: XCTestCase {
    var rng = WorldRNG(seed: 42)

    func randoms(_ n: Int, scale: Double = 1) -> [Double] { (0..<n).map { _ in scale * (2 * rng.uniform() - 1) } }

    /// Central difference of `loss` w.r.t. each element of `v` (restored afterwards).
    func numericGradient(_ v: inout [Double], h: Double = 1e-6, _ loss: ([Double]) -> Double) -> [Double] {
        var g = [Double](repeating: 0, count: v.count)
        for i in v.indices {
            let old = v[i]
            v[i] = old + h; let lp = loss(v)
            v[i] = old - h; let lm = loss(v)
            v[i] = old
            g[i] = (lp - lm) / (2 * h)
        }
        return g
    }

    func assertClose(_ a: [Double], _ b: [Double], tol: Double = 1e-6, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let scale = max(1, b.map(abs).max() ?? 0)
        let err = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThan(err / scale, tol, "\(what): max |analytic − numeric| = \(err)", file: file, line: line)
    }

    func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    func testIm2colMatchesDefinition() {
        let c = 2, h = 3, w = 4
        let x = randoms(c * h * w)
        var col = [Double](repeating: .nan, count: c * 9 * h * w)
        x.withUnsafeBufferPointer { xp in col.withUnsafeMutableBufferPointer { Conv3x3.im2col(xp.baseAddress!, channels: c, height: h, width: w, into: $0.baseAddress!) } }
        for ci in 0..<c { for ky in 0..<3 { for kx in 0..<3 { for y in 0..<h { for xx in 0..<w {
            let sy = y + ky - 1, sx = xx + kx - 1
            let want = (sy < 0 || sy >= h || sx < 0 || sx >= w) ? 0 : x[(ci * h + sy) * w + sx]
            XCTAssertEqual(col[(ci * 9 + ky * 3 + kx) * h * w + y * w + xx], want)
        } } } } }
    }

    func testConvBackward() {
        let cin = 2, cout = 3, h = 5, w = 6
        var x = randoms(cin * h * w), wt = randoms(cout * cin * 9, scale: 0.5), b = randoms(cout)
        let r = randoms(cout * h * w)
        func forward(_ x: [Double], _ wt: [Double], _ b: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: cout * h * w), col = [Double](repeating: 0, count: cin * 9 * h * w)
            Conv3x3.forward(x: x, cin: cin, height: h, width: w, weight: wt, bias: b, cout: cout, out: &out, col: &col)
            return out
        }
        // Direct definition of the convolution.
        let y = forward(x, wt, b)
        for co in 0..<cout { for yy in 0..<h { for xx in 0..<w {
            var s = b[co]
            for ci in 0..<cin { for ky in 0..<3 { for kx in 0..<3 {
                let sy = yy + ky - 1, sx = xx + kx - 1
                if sy >= 0 && sy < h && sx >= 0 && sx < w { s += wt[(co * cin + ci) * 9 + ky * 3 + kx] * x[(ci * h + sy) * w + sx] }
            } } }
            XCTAssertEqual(y[(co * h + yy) * w + xx], s, accuracy: 1e-12)
        } } }
        var dw = [Double](repeating: 0, count: wt.count), db = [Double](repeating: 0, count: cout)
        var dx = [Double](repeating: .nan, count: x.count), col = [Double](repeating: 0, count: cin * 9 * h * w)
        Conv3x3.backward(dout: r, x: x, cin: cin, height: h, width: w, weight: wt, cout: cout, dweight: &dw, dbias: &db, dx: &dx, col: &col)
        let nx = numericGradient(&x) { dot(r, forward($0, wt, b)) }
        let nw = numericGradient(&wt) { dot(r, forward(x, $0, b)) }
        let nb = numericGradient(&b) { dot(r, forward(x, wt, $0)) }
        assertClose(dx, nx, "conv dx")
        assertClose(dw, nw, "conv dw")
        assertClose(db, nb, "conv db")
        // Weight gradients accumulate.
        Conv3x3.backward(dout: r, x: x, cin: cin, height: h, width: w, weight: wt, cout: cout, dweight: &dw, dbias: &db, dx: nil, col: &col)
        assertClose(dw, nw.map { 2 * $0 }, "conv dw accumulates")
        assertClose(db, nb.map { 2 * $0 }, "conv db accumulates")
    }

    func testReLUBackward() {
        var x = randoms(50)
        let r = randoms(50)
        func forward(_ x: [Double]) -> [Double] { var y = x; ReLU.forward(&y, count: y.count); return y }
        var d = r
        ReLU.backward(&d, output: forward(x), count: 50)
        assertClose(d, numericGradient(&x) { dot(r, forward($0)) }, "relu")
    }

    func testMaxPoolBackward() {
        let c = 3, h = 4, w = 6
        var x = randoms(c * h * w)
        let n = c * (h / 2) * (w / 2)
        let r = randoms(n)
        func forward(_ x: [Double]) -> ([Double], [Int32]) {
            var y = [Double](repeating: 0, count: n), am = [Int32](repeating: -1, count: n)
            MaxPool2x2.forward(x, channels: c, height: h, width: w, out: &y, argmax: &am)
            return (y, am)
        }
        let (y, am) = forward(x)
        for ci in 0..<c { for i in 0..<(h / 2) { for j in 0..<(w / 2) {
            let win = [0, 1, w, w + 1].map { x[(ci * h + 2 * i) * w + 2 * j + $0] }
            XCTAssertEqual(y[(ci * (h / 2) + i) * (w / 2) + j], win.max()!)
        } } }
        var dx = [Double](repeating: .nan, count: x.count)
        MaxPool2x2.backward(dout: r, argmax: am, outputCount: n, dx: &dx, inputCount: x.count)
        assertClose(dx, numericGradient(&x) { dot(r, forward($0).0) }, "maxpool dx")
    }

    func testGroupNormBackward() {
        let c = 6, hw = 10, g = 3
        var x = randoms(c * hw, scale: 2), gamma = randoms(c), beta = randoms(c)
        let r = randoms(c * hw)
        func forward(_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: c * hw), st = [Double](repeating: 0, count: 2 * g)
            GroupNorm.forward(x, channels: c, pixels: hw, groups: g, gamma: gamma, beta: beta, out: &y, stats: &st)
            return y
        }
        // Definition: each group has mean β-free zero and unit variance before the affine map.
        let plain = forward(x, [Double](repeating: 1, count: c), [Double](repeating: 0, count: c))
        for gi in 0..<g {
            let v = plain[(gi * 2 * hw)..<((gi + 1) * 2 * hw)]
            let mean = v.reduce(0, +) / Double(v.count)
            XCTAssertEqual(mean, 0, accuracy: 1e-12)
            XCTAssertEqual(v.map { $0 * $0 }.reduce(0, +) / Double(v.count), 1, accuracy: 1e-4)
        }
        var st = [Double](repeating: 0, count: 2 * g), y = [Double](repeating: 0, count: c * hw)
        GroupNorm.forward(x, channels: c, pixels: hw, groups: g, gamma: gamma, beta: beta, out: &y, stats: &st)
        var dg = [Double](repeating: 0, count: c), db = [Double](repeating: 0, count: c), dx = r
        GroupNorm.backward(dout: r, x: x, stats: st, channels: c, pixels: hw, groups: g, gamma: gamma, dgamma: &dg, dbeta: &db, dx: &dx)
        assertClose(dx, numericGradient(&x) { dot(r, forward($0, gamma, beta)) }, "group norm dx")
        assertClose(dg, numericGradient(&gamma) { dot(r, forward(x, $0, beta)) }, "group norm dγ")
        assertClose(db, numericGradient(&beta) { dot(r, forward(x, gamma, $0)) }, "group norm dβ")
    }

    func testLinearBackward() {
        let rows = 3, fin = 7, fout = 4
        var x = randoms(rows * fin), wt = randoms(fout * fin), b = randoms(fout)
        let r = randoms(rows * fout)
        func forward(_ x: [Double], _ wt: [Double], _ b: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: rows * fout)
            Linear.forward(x: x, rows: rows, inFeatures: fin, weight: wt, bias: b, outFeatures: fout, out: &y)
            return y
        }
        var dw = [Double](repeating: 0, count: wt.count), db = [Double](repeating: 0, count: fout), dx = [Double](repeating: .nan, count: x.count)
        Linear.backward(dout: r, x: x, rows: rows, inFeatures: fin, weight: wt, outFeatures: fout, dweight: &dw, dbias: &db, dx: &dx)
        assertClose(dx, numericGradient(&x) { dot(r, forward($0, wt, b)) }, "linear dx")
        assertClose(dw, numericGradient(&wt) { dot(r, forward(x, $0, b)) }, "linear dw")
        assertClose(db, numericGradient(&b) { dot(r, forward(x, wt, $0)) }, "linear db")
    }

    func testSoftmaxCrossEntropy() {
        var z = randoms(12, scale: 3)
        let label = 5, scale = 0.25
        var d = [Double](repeating: 0, count: 12)
        let loss = SoftmaxCrossEntropy.forwardBackward(z, count: 12, label: label, scale: scale, dlogits: &d)
        var p = [Double](repeating: 0, count: 12)
        SoftmaxCrossEntropy.softmax(z, count: 12, into: &p)
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertEqual(loss, -log(p[label]), accuracy: 1e-12)
        var dd = [Double](repeating: 0, count: 12)
        let num = numericGradient(&z) { scale * SoftmaxCrossEntropy.forwardBackward($0, count: 12, label: label, scale: 1, dlogits: &dd) }
        assertClose(d, num, "softmax cross-entropy")
        // Large logits stay finite.
        let big = [1000.0, -1000, 0]
        var db = [Double](repeating: 0, count: 3)
        XCTAssertEqual(SoftmaxCrossEntropy.forwardBackward(big, count: 3, label: 0, scale: 1, dlogits: &db), 0, accuracy: 1e-12)
    }

    /// The whole network (convs, pools, fc, heads, the three cross-entropies) on a tiny configuration.
    func testNetworkBackward() throws {
        try checkNetwork(DetectorConfig(imageSize: 8, layers: [4, 0, 3, 5, 0], hidden: 6, classCount: 5, colorCount: 3))
    }

    /// The same with group normalisation after each convolution.
    func testNetworkWithGroupNormBackward() throws {
        try checkNetwork(DetectorConfig(imageSize: 8, layers: [4, 0, 6, 2, 0], normGroups: 2, hidden: 6, classCount: 5, colorCount: 3))
    }

    func checkNetwork(_ config: DetectorConfig) throws {
        let net = try DetectorNet<Double>(config: config)
        net.initialize(seed: 3)
        // Non-zero biases so that ReLUs sit away from their kink.
        for t in net.tensors where t.name.hasSuffix(".bias") || t.name.hasPrefix("norm") {
            for i in 0..<t.count { net.params[t.offset + i] += 0.1 * (2 * rng.uniform() - 1) }
        }
        let n = 3
        let ws = net.makeWorkspace(capacity: n)
        for i in 0..<(n * net.inputSize) { ws.input[i] = 2 * rng.uniform() - 1 }
        let labels = [[1, 0, 2], [4, 2, 2], [0, 1, 0]]
        let heads = config.headSizes, total = config.headOutputs
        func loss(fillGradient: Bool) -> Double {
            net.forward(ws, count: n)
            var l = 0.0
            for r in 0..<n {
                var off = 0
                for h in 0..<3 {
                    l += SoftmaxCrossEntropy.forwardBackward(ws.logits.p + r * total + off, count: heads[h], label: labels[r][h],
                                                              scale: 1.0 / Double(n), dlogits: ws.dlogits.p + r * total + off) / Double(n)
                    off += heads[h]
                }
            }
            return l
        }
        _ = loss(fillGradient: true)
        let grad = Buffer<Double>.zeros(net.parameterCount)
        net.backward(ws, count: n, grad: grad.p)
        let hh = 1e-6
        var num = [Double](repeating: 0, count: net.parameterCount)
        for i in 0..<net.parameterCount {
            let old = net.params[i]
            net.params[i] = old + hh; let lp = loss(fillGradient: false)
            net.params[i] = old - hh; let lm = loss(fillGradient: false)
            net.params[i] = old
            num[i] = (lp - lm) / (2 * hh)
        }
        for t in net.tensors {
            assertClose(Array(grad.array[t.offset..<(t.offset + t.count)]), Array(num[t.offset..<(t.offset + t.count)]), tol: 1e-5, "network \(t.name)")
        }
        XCTAssertGreaterThan(grad.array.map(abs).max()!, 1e-4, "gradient should not vanish")
    }
}
