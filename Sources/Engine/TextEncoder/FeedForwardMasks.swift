import BLAS
import Foundation

// Multipliers on MiniLM's feed-forward units (the 1,536 GELU outputs of each layer) and the gradient of a
// loss on the encoder's outputs with respect to them. A unit's activation depends on its token, so a unit
// that fires only on a concept word's tokens can be switched off without touching other prompts — the
// erasure's text-encoder mask sites (`text_ff`) rest on this.

/// What the forward pass keeps for `MiniLM.feedForwardMaskGradients`: per layer the inputs of the
/// non-linear steps (row-major, all sequences' rows one after another).
public final class MiniLMTape {
    struct Layer {
        let qkv: Buffer<Float>          // [R, 3H]: attention input projections
        let preNorm1: Buffer<Float>     // [R, H]: x + attention output, before the first LayerNorm
        let preGelu: Buffer<Float>      // [R, F]
        let activation: Buffer<Float>   // [R, F]: GELU output before the mask
        let preNorm2: Buffer<Float>     // [R, H]: before the second LayerNorm
    }
    var layers: [Layer] = []
    var offsets: [Int] = []
    var lengths: [Int] = []
    var output: Buffer<Float>?          // [R, H]: last hidden states
    public let masks: [Int: [Float]]
    public let fill: [Int: [Float]]

    init(masks: [Int: [Float]], fill: [Int: [Float]] = [:]) { self.masks = masks; self.fill = fill }

    /// Number of sequences encoded.
    public var count: Int { lengths.count }
    /// Tokens of sequence k.
    public func length(of k: Int) -> Int { lengths[k] }
}

/// A mask argument that does not fit the encoder.
public struct FeedForwardMaskError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

extension MiniLM {
    /// Encodes token sequences with multipliers on the feed-forward units of some layers (`masks[l]`:
    /// `intermediateSize` values; unlisted layers unmasked) and, when `keepTape`, the tape their gradient
    /// needs. A unit's output g becomes m·g + (1 − m)·f: f from `fill[l]` (mean ablation: a closed unit
    /// emits its mean instead of 0), or 0 for layers without fill. With no masks this is exactly `encode(batch:)`.
    public func encode(batch: [[Int]], feedForwardMasks masks: [Int: [Float]], fill: [Int: [Float]] = [:],
                       keepTape: Bool = false) throws -> (encodings: [TextEncoding], tape: MiniLMTape?)
    {
        try checkFeedForwardMasks(masks)
        try checkFeedForwardMasks(fill, what: "fill")
        let tape = keepTape ? MiniLMTape(masks: masks, fill: fill) : nil
        if batch.isEmpty { return ([], tape) }
        for ids in batch { try validate(ids) }
        return (try run(batch: batch, masks: masks, fill: fill, tape: tape), tape)
    }

    /// Makes every later `encode` apply these multipliers, and fill (see `encode(batch:feedForwardMasks:fill:)`),
    /// (call before sharing the instance): the erased text encoder of a mask file with text-encoder sites,
    /// without writing its weights.
    public func setFeedForwardMasks(_ masks: [Int: [Float]], fill: [Int: [Float]] = [:]) throws {
        try checkFeedForwardMasks(masks)
        try checkFeedForwardMasks(fill, what: "fill")
        feedForwardMasks = masks; feedForwardFill = fill
    }

    /// Each feed-forward unit's mean output (after the GELU) over every token of these sequences, per layer,
    /// in the unmasked encoder: the fill of mean ablation.
    public func meanFeedForwardActivations(batch: [[Int]]) throws -> [Int: [Float]] {
        let ones = Dictionary(uniqueKeysWithValues: (0..<layerCount).map { ($0, [Float](repeating: 1, count: intermediateSize)) })
        let (_, tape) = try encode(batch: batch, feedForwardMasks: ones, keepTape: true)
        guard let tape, !batch.isEmpty else { throw FeedForwardMaskError(description: "no sequences to average over") }
        let R = tape.lengths.reduce(0, +), F = intermediateSize
        var means: [Int: [Float]] = [:]
        for l in 0..<layerCount {
            var s = [Double](repeating: 0, count: F)
            let a = tape.layers[l].activation
            for r in 0..<R { for j in 0..<F { s[j] += Double(a[r * F + j]) } }
            means[l] = s.map { Float($0 / Double(R)) }
        }
        return means
    }

    /// Throws unless every key is a layer and every value has `intermediateSize` values.
    public func checkFeedForwardMasks(_ masks: [Int: [Float]], what: String = "mask") throws {
        for (l, m) in masks {
            guard (0..<layerCount).contains(l) else {
                throw FeedForwardMaskError(description: "text-encoder \(what) for layer \(l): MiniLM has layers 0..<\(layerCount)")
            }
            guard m.count == intermediateSize else {
                throw FeedForwardMaskError(description: "text-encoder \(what) for layer \(l) has \(m.count) values, expected \(intermediateSize)")
            }
        }
    }

    /// dL/dm for every masked layer of `tape`, given dL/d(last hidden states) (`dHidden[k]`: T_k·H values, or
    /// empty for none) and dL/d(pooled embedding) (`dPooled[k]`: H values, or empty) of each sequence.
    /// Backpropagates from the top layer down to the lowest masked one.
    public func feedForwardMaskGradients(tape: MiniLMTape, dHidden: [[Float]], dPooled: [[Float]]) throws -> [Int: [Float]] {
        let H = hiddenSize, F = intermediateSize, heads = headCount, D = H / heads
        guard let output = tape.output, tape.layers.count == layerCount else {
            throw FeedForwardMaskError(description: "the tape was not filled by an encode(batch:feedForwardMasks:keepTape: true) call")
        }
        guard dHidden.count == tape.count, dPooled.count == tape.count else {
            throw FeedForwardMaskError(description: "got gradients for \(dHidden.count)/\(dPooled.count) sequences, the tape holds \(tape.count)")
        }
        let R = tape.lengths.reduce(0, +)
        let dx = Buffer<Float>.zeros(R * H)
        for k in 0..<tape.count {
            let T = tape.lengths[k], base = tape.offsets[k] * H
            if !dHidden[k].isEmpty {
                guard dHidden[k].count == T * H else {
                    throw FeedForwardMaskError(description: "sequence \(k): hidden-state gradient has \(dHidden[k].count) values, expected \(T * H)")
                }
                for j in 0..<(T * H) { dx[base + j] += dHidden[k][j] }
            }
            if !dPooled[k].isEmpty {
                guard dPooled[k].count == H else {
                    throw FeedForwardMaskError(description: "sequence \(k): pooled gradient has \(dPooled[k].count) values, expected \(H)")
                }
                // p = μ/‖μ‖, μ = mean_t x_t  ⇒  dμ = (dp − p·(p·dp))/‖μ‖, dx_t += dμ/T.
                var mean = [Double](repeating: 0, count: H)
                for t in 0..<T { for c in 0..<H { mean[c] += Double(output[base + t * H + c]) } }
                var norm = 0.0
                for c in 0..<H { mean[c] /= Double(T); norm += mean[c] * mean[c] }
                norm = max(norm.squareRoot(), 1e-12)
                var pdp = 0.0
                for c in 0..<H { pdp += mean[c] / norm * Double(dPooled[k][c]) }
                for c in 0..<H {
                    let dm = (Double(dPooled[k][c]) - mean[c] / norm * pdp) / norm / Double(T)
                    for t in 0..<T { dx[base + t * H + c] += Float(dm) }
                }
            }
        }
        guard let lowest = tape.masks.keys.min() else { return [:] }
        var grads: [Int: [Float]] = [:]
        let dUp = Buffer<Float>(uninitialized: R * F)
        let dContext = Buffer<Float>(uninitialized: R * H)
        let dqkv = Buffer<Float>(uninitialized: R * 3 * H)
        for l in stride(from: layerCount - 1, through: lowest, by: -1) {
            let w = layers[l], t = tape.layers[l]
            // x_out = LN2(s2), s2 = x1 + (m ⊙ g)·W2ᵀ + b2, g = GELU(x1·W1ᵀ + b1).
            layerNormBackward(dx.p, input: t.preNorm2.p, weight: w.norm2.weight.p, rows: R, C: H, eps: layerNormEps)
            // d(m ⊙ g) = ds2 · W2   [R, F]
            Gemm.run(transA: false, transB: false, m: R, n: F, k: H, alpha: 1, a: dx.p, lda: H, b: w.downWeight.p, ldb: F,
                     beta: 0, c: dUp.p, ldc: F)
            if let m = tape.masks[l] {
                var g = [Double](repeating: 0, count: F)
                // d/dm of m·g + (1 − m)·f is g − f.
                let f = tape.fill[l] ?? [Float](repeating: 0, count: F)
                for r in 0..<R {
                    let d = dUp.p + r * F, a = t.activation.p + r * F
                    for j in 0..<F { g[j] += Double(d[j]) * Double(a[j] - f[j]) }
                }
                grads[l] = g.map { Float($0) }
                for r in 0..<R { let d = dUp.p + r * F; for j in 0..<F { d[j] *= m[j] } }
            }
            if l == lowest { break }
            for i in 0..<(R * F) { dUp[i] *= geluErfDerivative(t.preGelu[i]) }
            // x1 gets ds2 (residual) + dUpPre · W1.
            Gemm.run(transA: false, transB: false, m: R, n: H, k: F, alpha: 1, a: dUp.p, lda: F, b: w.upWeight.p, ldb: H,
                     beta: 1, c: dx.p, ldc: H)
            // x1 = LN1(s1), s1 = x0 + context·Woᵀ + bo.
            layerNormBackward(dx.p, input: t.preNorm1.p, weight: w.norm1.weight.p, rows: R, C: H, eps: layerNormEps)
            Gemm.run(transA: false, transB: false, m: R, n: H, k: H, alpha: 1, a: dx.p, lda: H, b: w.outWeight.p, ldb: H,
                     beta: 0, c: dContext.p, ldc: H)
            for k in 0..<tape.count {
                let o = tape.offsets[k]
                selfAttentionBackward(dqkv: dqkv.p + o * 3 * H, dContext: dContext.p + o * H, qkv: t.qkv.p + o * 3 * H,
                                      T: tape.lengths[k], heads: heads, headDim: D)
            }
            // x0 gets ds1 (residual) + dqkv · Wqkv.
            Gemm.run(transA: false, transB: false, m: R, n: H, k: 3 * H, alpha: 1, a: dqkv.p, lda: 3 * H, b: w.qkvWeight.p, ldb: H,
                     beta: 1, c: dx.p, ldc: H)
        }
        return grads
    }
}

/// d/dx of x·Φ(x): Φ(x) + x·φ(x).
@inline(__always)
func geluErfDerivative(_ x: Float) -> Float {
    let cdf = 0.5 * (1 + fastErf(x * 0.70710678118654752))
    let pdf = 0.3989422804014327 * Float.fastExp(-0.5 * x * x)
    return cdf + x * pdf
}

/// In place: dy → dx for y = LN(x)·w + b over rows of C (statistics recomputed from `input`, in Double).
func layerNormBackward(_ d: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                       rows: Int, C: Int, eps: Double) {
    for r in 0..<rows {
        let x = input + r * C, g = d + r * C
        var s = 0.0
        for c in 0..<C { s += Double(x[c]) }
        let mean = s / Double(C)
        var q = 0.0
        for c in 0..<C { let e = Double(x[c]) - mean; q += e * e }
        let rstd = 1 / (q / Double(C) + eps).squareRoot()
        var a = 0.0, b = 0.0
        for c in 0..<C {
            let xh = (Double(x[c]) - mean) * rstd, dxh = Double(g[c]) * Double(weight[c])
            a += dxh; b += dxh * xh
        }
        a /= Double(C); b /= Double(C)
        for c in 0..<C {
            let xh = (Double(x[c]) - mean) * rstd, dxh = Double(g[c]) * Double(weight[c])
            g[c] = Float(rstd * (dxh - a - xh * b))
        }
    }
}

/// Backward of `selfAttention` for one sequence: dContext [T, H·D] → dqkv [T, 3·H·D] (overwritten).
/// The attention probabilities are recomputed from qkv (T is a prompt's length: small).
func selfAttentionBackward(dqkv: UnsafeMutablePointer<Float>, dContext: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                           T: Int, heads: Int, headDim D: Int) {
    let width = heads * D, ld = 3 * width
    let scale = 1 / Float(D).squareRoot()
    var p = [Float](repeating: 0, count: T * T), dp = [Float](repeating: 0, count: T * T)
    for h in 0..<heads {
        let q = qkv + h * D, k = qkv + width + h * D, v = qkv + 2 * width + h * D
        let dq = dqkv + h * D, dk = dqkv + width + h * D, dv = dqkv + 2 * width + h * D
        for i in 0..<T {
            var m = -Float.infinity
            for j in 0..<T {
                var s: Float = 0
                for c in 0..<D { s += q[i * ld + c] * k[j * ld + c] }
                p[i * T + j] = s * scale
                m = max(m, s * scale)
            }
            var z: Float = 0
            for j in 0..<T { p[i * T + j] = Float.fastExp(p[i * T + j] - m); z += p[i * T + j] }
            for j in 0..<T { p[i * T + j] /= z }
        }
        // context_i = Σ_j p_ij v_j  ⇒  dv_j = Σ_i p_ij dc_i, dp_ij = dc_i · v_j.
        for j in 0..<T { for c in 0..<D { dv[j * ld + c] = 0 } }
        for i in 0..<T {
            let dc = dContext + i * width + h * D
            for j in 0..<T {
                var s: Float = 0
                for c in 0..<D { s += dc[c] * v[j * ld + c]; dv[j * ld + c] += p[i * T + j] * dc[c] }
                dp[i * T + j] = s
            }
        }
        // softmax: ds_ij = p_ij (dp_ij − Σ_l p_il dp_il); scores = scale·q·kᵀ.
        for j in 0..<T { for c in 0..<D { dq[j * ld + c] = 0; dk[j * ld + c] = 0 } }
        for i in 0..<T {
            var dot: Float = 0
            for j in 0..<T { dot += p[i * T + j] * dp[i * T + j] }
            for j in 0..<T {
                let ds = p[i * T + j] * (dp[i * T + j] - dot) * scale
                for c in 0..<D {
                    dq[i * ld + c] += ds * k[j * ld + c]
                    dk[j * ld + c] += ds * q[i * ld + c]
                }
            }
        }
    }
}
