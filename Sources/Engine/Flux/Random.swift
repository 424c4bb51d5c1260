import BLAS
import Foundation

extension FluxWeights {
    /// Weights with PyTorch's default Linear init, U(−1/√in, 1/√in), and RMSNorm weights 1 — what an
    /// untrained diffusers model holds. Deterministic in `seed`.
    public static func random(config: FluxConfig, seed: UInt64) -> FluxWeights<T> {
        var rng = SplitMix64(seed: seed)
        return build(config: config, linear: { i, o in
            let bound = 1 / Double(i).squareRoot()
            let w = Buffer<T>(uninitialized: i * o), b = Buffer<T>(uninitialized: o)
            for k in 0..<(i * o) { w[k] = T((2 * rng.uniform() - 1) * bound) }
            for k in 0..<o { b[k] = T((2 * rng.uniform() - 1) * bound) }
            return LinearWeights(w: w, b: b, inDim: i, outDim: o)
        }, norm: { Buffer(repeating: 1, count: $0) })
    }
}

extension FluxConfig {
    /// Floating-point operations of one forward pass, counted as the PyTorch reference script counts them
    /// (scripts/bench_reference.py): 2·rows·in·out for every Linear call (rows = 1 per sample for the
    /// embedder and modulation Linears) plus 4·S²·dim per attention (QKᵀ and PV); element-wise work ignored.
    public func forwardFLOPs(textTokens lt: Int, imageTokens li: Int, batch: Int = 1) -> Double {
        let d = Double(dim), m = Double(mlpDim), s = Double(lt + li), B = Double(batch)
        let P = Double(FluxConfig.timeProjDim)
        func lin(_ rows: Double, _ i: Double, _ o: Double) -> Double { 2 * rows * i * o }
        var f = lin(Double(li), Double(inChannels), d) + lin(Double(lt), Double(jointAttentionDim), d)
        f += lin(1, P, d) + lin(1, d, d) + lin(1, Double(pooledProjectionDim), d) + lin(1, d, d)
        if guidanceEmbeds { f += lin(1, P, d) + lin(1, d, d) }
        let attention = 4 * s * s * d
        // In a double block each stream has its own weights, but together q/k/v, the output projections and
        // the FFs cover all S tokens once.
        let double = 2 * lin(1, d, 6 * d) + 3 * lin(s, d, d) + attention + lin(s, d, d) + lin(s, d, m) + lin(s, m, d)
        let single = lin(1, d, 3 * d) + lin(s, d, 3 * d + m) + attention + lin(s, d + m, d)
        f += Double(numLayers) * double + Double(numSingleLayers) * single
        f += lin(1, d, 2 * d) + lin(Double(li), d, Double(outputChannels))
        return f * B
    }
}
