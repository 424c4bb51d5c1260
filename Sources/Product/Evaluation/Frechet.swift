import Foundation

/// Fréchet distance between two feature sets, each summarised by a Gaussian (the FID formula):
/// ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½). Features here are the concept detector's penultimate
/// activations, so the figure is an *in-domain* FID, not comparable with Inception-based FID values.
public enum Frechet {
    public struct Gaussian {
        public let mean: [Double]
        public let cov: [Double]   // d×d, row-major, unbiased (n − 1)
        public var dim: Int { mean.count }
    }

    public static func fit(_ features: [[Float]]) -> Gaussian {
        let n = features.count, d = features.first?.count ?? 0
        precondition(n >= 2, "need at least two feature vectors")
        var mean = [Double](repeating: 0, count: d)
        for f in features { for j in 0..<d { mean[j] += Double(f[j]) } }
        for j in 0..<d { mean[j] /= Double(n) }
        var cov = [Double](repeating: 0, count: d * d)
        var c = [Double](repeating: 0, count: d)
        for f in features {
            for j in 0..<d { c[j] = Double(f[j]) - mean[j] }
            for i in 0..<d where c[i] != 0 {
                let ci = c[i]
                for j in i..<d { cov[i * d + j] += ci * c[j] }
            }
        }
        for i in 0..<d {
            for j in i..<d {
                let v = cov[i * d + j] / Double(n - 1)
                cov[i * d + j] = v
                cov[j * d + i] = v
            }
        }
        return Gaussian(mean: mean, cov: cov)
    }

    public static func distance(_ a: Gaussian, _ b: Gaussian) -> Double {
        let d = a.dim
        precondition(b.dim == d)
        var meanTerm = 0.0
        for j in 0..<d { meanTerm += (a.mean[j] - b.mean[j]) * (a.mean[j] - b.mean[j]) }
        var trace = 0.0
        for j in 0..<d { trace += a.cov[j * d + j] + b.cov[j * d + j] }
        // Σ₁^½ from Σ₁'s eigendecomposition; then the eigenvalues of the symmetric Σ₁^½ Σ₂ Σ₁^½.
        let (lambda, v) = symmetricEigen(a.cov, d)
        var sqrtA = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for j in 0..<d {
                var s = 0.0
                for k in 0..<d { s += v[i * d + k] * max(lambda[k], 0).squareRoot() * v[j * d + k] }
                sqrtA[i * d + j] = s
            }
        }
        let m = multiply(multiply(sqrtA, b.cov, d), sqrtA, d)
        let (mu, _) = symmetricEigen(m, d)
        let crossTrace = mu.reduce(0) { $0 + max($1, 0).squareRoot() }
        return max(0, meanTerm + trace - 2 * crossTrace)
    }

    public static func distance(_ x: [[Float]], _ y: [[Float]]) -> Double { distance(fit(x), fit(y)) }

    static func multiply(_ a: [Double], _ b: [Double], _ d: Int) -> [Double] {
        var c = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for k in 0..<d {
                let aik = a[i * d + k]
                if aik == 0 { continue }
                for j in 0..<d { c[i * d + j] += aik * b[k * d + j] }
            }
        }
        return c
    }

    /// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of a symmetric matrix, by
    /// cyclic Jacobi rotations: slow for big matrices but exact to rounding and dependency-free (d ≤ a few hundred).
    public static func symmetricEigen(_ m: [Double], _ d: Int) -> (values: [Double], vectors: [Double]) {
        var a = m
        var v = [Double](repeating: 0, count: d * d)
        for i in 0..<d { v[i * d + i] = 1 }
        for _ in 0..<100 {
            var off = 0.0
            for i in 0..<d { for j in (i + 1)..<d where j < d { off += a[i * d + j] * a[i * d + j] } }
            if off < 1e-22 * max(1, (0..<d).reduce(0) { $0 + a[$1 * d + $1] * a[$1 * d + $1] }) { break }
            for p in 0..<d {
                for q in (p + 1)..<d where q < d {
                    let apq = a[p * d + q]
                    if abs(apq) < 1e-300 { continue }
                    let theta = (a[q * d + q] - a[p * d + p]) / (2 * apq)
                    let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot(), s = t * c
                    for k in 0..<d {
                        let akp = a[k * d + p], akq = a[k * d + q]
                        a[k * d + p] = c * akp - s * akq
                        a[k * d + q] = s * akp + c * akq
                    }
                    for k in 0..<d {
                        let apk = a[p * d + k], aqk = a[q * d + k]
                        a[p * d + k] = c * apk - s * aqk
                        a[q * d + k] = s * apk + c * aqk
                    }
                    for k in 0..<d {
                        let vkp = v[k * d + p], vkq = v[k * d + q]
                        v[k * d + p] = c * vkp - s * vkq
                        v[k * d + q] = s * vkp + c * vkq
                    }
                }
            }
        }
        return ((0..<d).map { a[$0 * d + $0] }, v)
    }
}
