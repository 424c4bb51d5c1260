import BLAS
import Flux
import Foundation
import SafeTensors
import TestSupport
import XCTest

/// The bf16 path (oneDNN, AVX-512 BF16) against exact products of bf16-rounded inputs and against the float64
/// references of the golden fixtures: forward within 2e-2 of max|out|, mask-logit gradients through the 4-step
/// sampler with cosine ≥ 0.99. Skipped where the CPU has no native bf16 products (the engine then runs f32).
final class BF16Tests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(BF16.isNative, "no native bf16 matrix products on this CPU (\(BF16.backend))")
    }

    override func tearDown() { Precision.forNewModels = .f32 }

    /// Products of bf16-rounded operands are exact in f32 up to summation order: compare with float64 sums.
    func testProductsEqualExactProductsOfRoundedOperands() throws {
        var rng = SplitMix64(seed: 7)
        for (m, k, n, ldc) in [(37, 70, 45, 45), (130, 256, 96, 100), (3, 512, 1536, 1536)] {
            let a = BF16.round((0..<(m * k)).map { _ in Float(rng.normal()) })
            let w = BF16.round((0..<(n * k)).map { _ in Float(rng.normal()) })   // [n, k] like a Linear weight
            let bias = (0..<n).map { _ in Float(rng.normal()) }
            let pack = try PackedMatrix(k: k, n: n, b: w, sk: 1, sn: k)
            var c = [Float](repeating: 0.5, count: m * ldc)
            pack.product(m: m, a: a, lda: k, c: &c, ldc: ldc, bias: bias, accumulate: true)
            var g = [Float](repeating: 0.25, count: m * ldc)
            Gemm.bf16(transB: true, m: m, n: n, k: k, alpha: 2, a: a, lda: k, b: w, ldb: k, beta: 1, c: &g, ldc: ldc)
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for t in 0..<k { s += Double(a[i * k + t]) * Double(w[j * k + t]) }
                    let scale = 1e-5 * Double(k).squareRoot() * 4
                    XCTAssertEqual(Double(c[i * ldc + j]), 0.5 + s + Double(bias[j]), accuracy: scale, "packed \(m)×\(k)×\(n) at \(i),\(j)")
                    XCTAssertEqual(Double(g[i * ldc + j]), 0.25 + 2 * s, accuracy: 2 * scale, "gemm \(m)×\(k)×\(n) at \(i),\(j)")
                }
                for j in n..<ldc {
                    XCTAssertEqual(c[i * ldc + j], 0.5, "the padding columns of C are left alone")
                }
            }
        }
    }

    func testForwardWithinTwoPercentOfMaxOutput() throws {
        for m in GoldenForwardTests.models {
            let ref = try Fixtures.doubles("\(m).io.safetensors", "output_float64_reference")
            for path in [m, "\(m)_bf16"] {
                Precision.forNewModels = .bf16
                let model = FluxTransformer(weights: try GoldenForwardTests.loader(path).load(as: Float.self))
                XCTAssertEqual(model.weights.matmulMode, .bf16)
                let inp = try ModelInputs<Float>(path: Fixtures.golden("\(m).io.safetensors"), config: model.config, requireTimestep: true)
                let out = try model.forward(hidden: inp.hidden.p, sigma: inp.timestep!, cond: inp.cond).array
                XCTAssertGreaterThan(model.weights.packedBytes, 0, "the products ran through oneDNN packs")
                let maxRef = ref.map(abs).max()!
                let err = zip(out, ref).map { abs(Double($0) - $1) }.max()!
                print("bf16 forward \(path): max error / max|out| = \(err / maxRef)")
                XCTAssertLessThanOrEqual(err, 2e-2 * maxRef, "\(path): bf16 max error \(err) vs max|out| \(maxRef)")
                // And it is not f32: bf16 rounding leaves a visible difference.
                XCTAssertGreaterThan(err, 1e-6 * maxRef, "\(path): bf16 output equals f32 to the last digits")
            }
        }
    }

    func testMaskGradientsThroughFourStepsHaveCosineAbove099() throws {
        for m in GoldenForwardTests.models {
            Precision.forNewModels = .bf16
            let (r, file, logits) = try GradientTests.run(m, as: Float.self)
            var got: [Double] = [], want: [Double] = []
            var worst = (site: "", cos: 1.0)
            for (site, l) in logits.sorted(by: { "\($0.key)" < "\($1.key)" }) {
                let dm = r.grads.masks[site]!
                let g = l.indices.map { k -> Double in
                    let s = 1 / (1 + Foundation.exp(-l[k]))
                    return Double(dm[k]) * s * (1 - s)
                }
                let ref = try file.doubles("ref.grad.\(site)")
                let c = cosine(g, ref)
                if c < worst.cos { worst = ("\(site)", c) }
                got += g; want += ref
            }
            let all = cosine(got, want)
            print("bf16 mask-logit gradients \(m): cosine \(all) over all sites, worst site \(worst.site) \(worst.cos)")
            XCTAssertGreaterThanOrEqual(all, 0.99, "\(m): cosine of all mask-logit gradients")
            XCTAssertGreaterThanOrEqual(worst.cos, 0.99, "\(m): worst site \(worst.site)")
        }
    }

    func cosine(_ a: [Double], _ b: [Double]) -> Double {
        let dot = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
        let na = a.reduce(0) { $0 + $1 * $1 }.squareRoot(), nb = b.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return dot / max(na * nb, 1e-300)
    }
}
