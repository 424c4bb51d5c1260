import BLAS
import Foundation

/// AdamW (decoupled weight decay, bias-corrected moments) over a list of parameter buffers, as in
/// llm.c's gpt2_update: m = β1·m + (1−β1)·g, v = β2·v + (1−β2)·g², p −= lr·(m̂/(√v̂ + ε) + wd·p).
public final class AdamW<T: Scalar> {
    public var lr: Double
    public let beta1: Double, beta2: Double, eps: Double, weightDecay: Double
    public private(set) var step = 0
    private var m: [Buffer<T>] = []
    private var v: [Buffer<T>] = []

    public init(lr: Double, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
        self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    /// One update of `params` with gradients `grads` (same shapes, same order on every call).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func update(_ params: [Buffer<T>], _ grads: [Buffer<T>]) {
        precondition(params.count == grads.count)
        if m.isEmpty {
            m = params.map { .zeros($0.count) }
            v = params.map { .zeros($0.count) }
        }
        step += 1
        let c1 = 1 - Foundation.pow(beta1, Double(step)), c2 = 1 - Foundation.pow(beta2, Double(step))
        let b1 = T(beta1), b2 = T(beta2), lrT = T(lr), wd = T(weightDecay), e = T(eps)
        let ic1 = T(1 / c1), ic2 = T(1 / c2)
        for (k, p) in params.enumerated() {
            let g = grads[k], mk = m[k], vk = v[k]
            precondition(g.count == p.count)
            Parallel.forEachChunk(p.count, workPerItem: 12) { range in
                for i in range {
                    let gi = g[i]
                    mk[i] = b1 * mk[i] + (1 - b1) * gi
                    vk[i] = b2 * vk[i] + (1 - b2) * gi * gi
                    let mh = mk[i] * ic1, vh = vk[i] * ic2
                    p[i] -= lrT * (mh / (vh.squareRoot() + e) + wd * p[i])
                }
            }
        }
    }

    /// Optimiser state for checkpoints: [m…, v…] and the step count.
    public var state: (step: Int, moments: [Buffer<T>]) { (step, m + v) }

    public func restore(step: Int, moments: [Buffer<T>]) {
        precondition(moments.count % 2 == 0)
        self.step = step
        m = Array(moments[0..<(moments.count / 2)])
        v = Array(moments[(moments.count / 2)...])
    }
}
