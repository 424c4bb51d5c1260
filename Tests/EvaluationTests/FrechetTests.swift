@testable import Evaluation
import BLAS
import Flux
import XCTest

final class FrechetTests: XCTestCase {
    func gaussianSamples(_ n: Int, _ d: Int, shift: Double, scale: Double, seed: UInt64) -> [[Float]] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in (0..<d).map { _ in Float(shift + scale * rng.normal()) } }
    }

    func testEigenDecompositionReconstructs() {
        let d = 6
        var rng = SplitMix64(seed: 1)
        let r = (0..<(d * d)).map { _ in rng.normal() }
        var m = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0..<d { for k in 0..<d { m[i * d + j] += r[i * d + k] * r[j * d + k] } } }
        let (l, v) = Frechet.symmetricEigen(m, d)
        for i in 0..<d {
            for j in 0..<d {
                let s = (0..<d).reduce(0.0) { $0 + v[i * d + $1] * l[$1] * v[j * d + $1] }
                XCTAssertEqual(s, m[i * d + j], accuracy: 1e-9)
            }
        }
    }

    func testKnownAnswers() {
        let x = gaussianSamples(2000, 8, shift: 0, scale: 1, seed: 2)
        XCTAssertEqual(Frechet.distance(x, x), 0, accuracy: 1e-8, "FID of a set with itself")
        // Two Gaussians N(0, I) and N(μ, 4I): FID = ‖μ‖² + d·(1 + 4 − 2·2) = ‖μ‖² + d.
        let g1 = Frechet.Gaussian(mean: [0, 0, 0], cov: [1, 0, 0, 0, 1, 0, 0, 0, 1])
        let g2 = Frechet.Gaussian(mean: [1, 2, 2], cov: [4, 0, 0, 0, 4, 0, 0, 0, 4])
        XCTAssertEqual(Frechet.distance(g1, g2), 9 + 3, accuracy: 1e-9)
        // Sample estimate close to the closed form.
        let y = gaussianSamples(4000, 8, shift: 0.5, scale: 1, seed: 3)
        XCTAssertEqual(Frechet.distance(x, y), 8 * 0.25, accuracy: 0.3)
    }
}
