import BLAS
import Flux
import Foundation

/// How a mask logit λ becomes a multiplier during optimisation.
///
/// Hard concrete (Louizos et al. 2018, as the authors use it): with u ~ U(0, 1),
///   s = sigmoid((log(u + ε) − log(1 − u + ε) + λ) / τ),  m = clamp(s·(ζ − γ) + γ, 0, 1).
/// ε = 0.5 bounds the logistic noise to ±log 3, so the relaxation is only mildly stochastic; λ = 3 gives
/// m ≈ 1 for every u. Sigmoid: m = sigmoid(λ), deterministic.
public enum MaskRelaxation: Codable, Equatable, Sendable {
    case hardConcrete(temperature: Double, gamma: Double, zeta: Double, eps: Double)
    case sigmoid

    /// The constants of the authors' FLUX configuration.
    public static let authors = MaskRelaxation.hardConcrete(temperature: 0.83, gamma: -0.1, zeta: 1.1, eps: 0.5)

    public static func named(_ name: String) throws -> MaskRelaxation {
        switch name.lowercased() {
        case "hard-concrete", "hard_concrete", "hardconcrete": return .authors
        case "sigmoid": return .sigmoid
        default: throw ErasureError.badArgument("--relaxation must be hard-concrete or sigmoid, not '\(name)'")
        }
    }

    public var name: String {
        switch self {
        case .hardConcrete: return "hard-concrete"
        case .sigmoid: return "sigmoid"
        }
    }

    /// Multiplier and d(multiplier)/dλ for one logit and one uniform draw (ignored by `.sigmoid`).
    @inlinable
    public func sample(logit: Double, u: Double) -> (mask: Double, dLogit: Double) {
        switch self {
        case let .hardConcrete(tau, gamma, zeta, eps):
            let noise = Foundation.log(u + eps) - Foundation.log(1 - u + eps)
            let s = 1 / (1 + Foundation.exp(-(noise + logit) / tau))
            let pre = s * (zeta - gamma) + gamma
            if pre <= 0 { return (0, 0) }
            if pre >= 1 { return (1, 0) }
            return (pre, (zeta - gamma) * s * (1 - s) / tau)
        case .sigmoid:
            let s = 1 / (1 + Foundation.exp(-logit))
            return (s, s * (1 - s))
        }
    }

    /// The noise-free multiplier (u = ½), used for previews of the continuous mask.
    public func expected(logit: Double) -> Double { sample(logit: logit, u: 0.5).mask }
}

/// How the learnt logits become a binary mask.
public enum Binarisation: Equatable, Sendable, CustomStringConvertible {
    case threshold(Double)          // keep a unit iff λ > threshold (the authors: 0)
    case topPerSite(Double)         // keep the top fraction of each site's units by λ
    case topGlobal(Double)          // keep the top fraction over all sites

    public static func parse(_ text: String) throws -> Binarisation {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let value = parts.count == 2 ? Double(parts[1]) : nil
        switch (parts[0], value) {
        case ("threshold", let v?): return .threshold(v)
        case ("threshold", nil) where parts.count == 1: return .threshold(0)
        case ("top-site", let v?) where v > 0 && v <= 1: return .topPerSite(v)
        case ("top-global", let v?) where v > 0 && v <= 1: return .topGlobal(v)
        default:
            throw ErasureError.badArgument("--binarise must be threshold[:T], top-site:F or top-global:F with 0 < F ≤ 1, not '\(text)'")
        }
    }

    public var description: String {
        switch self {
        case .threshold(let t): return "threshold:\(t)"
        case .topPerSite(let f): return "top-site:\(f)"
        case .topGlobal(let f): return "top-global:\(f)"
        }
    }

    /// Binary masks (0/1) for the logits of every site, transformer and text-encoder sites alike. Ties in the
    /// top-k rules break by index (stable); `top-global` ranks the units of all sites in `Site` order
    /// (transformer sites by kind and block, then text-encoder layers).
    public func apply(_ logits: [Site: [Float]]) -> [Site: [Float]] {
        let sites = logits.keys.sorted()
        let binary = apply(ordered: sites.map { logits[$0]! })
        return Dictionary(uniqueKeysWithValues: zip(sites, binary))
    }

    /// The rule on a list of sites' logits (the order matters only for ties of `top-global`).
    func apply(ordered sites: [[Float]]) -> [[Float]] {
        func keepTop(_ values: [(Float, Int)], fraction: Double) -> Set<Int> {
            let k = Int((Double(values.count) * fraction).rounded())
            let order = values.sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }
            return Set(order.prefix(k).map(\.1))
        }
        switch self {
        case .threshold(let t):
            return sites.map { $0.map { Double($0) > t ? 1 : 0 } }
        case .topPerSite(let f):
            return sites.map { l in
                let keep = keepTop(l.enumerated().map { ($1, $0) }, fraction: f)
                return l.indices.map { keep.contains($0) ? 1 : 0 }
            }
        case .topGlobal(let f):
            var all: [(Float, Int)] = [], offsets: [Int] = [], n = 0
            for l in sites {
                offsets.append(n)
                all += l.enumerated().map { ($1, n + $0) }
                n += l.count
            }
            let keep = keepTop(all, fraction: f)
            return sites.enumerated().map { i, l in l.indices.map { keep.contains(offsets[i] + $0) ? 1 : 0 } }
        }
    }
}
