import BLAS

/// Backpropagation through a whole Euler sampling run with step-wise checkpointing: the forward run keeps
/// only the N+1 latents; the backward run replays one step at a time (forward with a tape, then its
/// vector–Jacobian product), so peak memory is the latents plus one step's activations, whatever N is.
public struct CheckpointedSampler<T: Scalar> {
    public let transformer: FluxTransformer<T>
    public let cond: FluxConditioning<T>
    public let schedule: FlowMatchSchedule
    public let masks: MaskSet<T>

    public init(transformer: FluxTransformer<T>, cond: FluxConditioning<T>, schedule: FlowMatchSchedule, masks: MaskSet<T> = MaskSet()) {
        self.transformer = transformer; self.cond = cond; self.schedule = schedule; self.masks = masks
    }

    /// The objective's value and its gradient with respect to the final latent x_0.
    public typealias Objective = (_ x0: Buffer<T>) throws -> (loss: Double, dx0: Buffer<T>)

    public struct Result {
        public let sample: Buffer<T>        // x_0
        public let loss: Double
        /// Gradients w.r.t. mask values, encoder_hidden_states, pooled_projections (and weights if asked);
        /// `grads.hidden` holds the gradient w.r.t. the starting noise x_T.
        public let grads: FluxGradients<T>
    }

    /// Runs the sampler from `start`, evaluates `objective` on x_0 and backpropagates through every step.
    /// `progress` is called after each forward step and each replayed step (2N calls).
    public func gradient(
        start: Buffer<T>, maskGradients sites: [MaskSite], weightGradients: Bool = false,
        objective: Objective, progress: ((Int, Int) -> Void)? = nil
    ) throws -> Result {
        let n = schedule.steps, B = cond.batch
        let sampler = EulerSampler(transformer: transformer, cond: cond, schedule: schedule, start: start, masks: masks)
        var latents = [sampler.latent]
        for i in 0..<n {
            try sampler.step()
            latents.append(sampler.latent)
            progress?(i + 1, 2 * n)
        }
        let x0 = latents[n]
        let (loss, dx0) = try objective(x0)
        guard dx0.count == x0.count else { throw FluxError.badShape("objective gradient has \(dx0.count) values, latent \(x0.count)") }
        let grads = FluxGradients<T>(config: transformer.config, batch: B, textTokens: cond.textTokens,
                                     imageTokens: cond.imageTokens, maskSites: sites, weights: weightGradients)
        // g = dL/dx_{i+1}; x_{i+1} = x_i + dt_i·v(x_i)  ⇒  dL/dx_i = g + dt_i·(∂v/∂x_i)ᵀ g.
        let g = dx0.copy()
        let dv = Buffer<T>(uninitialized: g.count)
        for i in stride(from: n - 1, through: 0, by: -1) {
            let dt = T(schedule.sigmas[i + 1] - schedule.sigmas[i])
            for k in 0..<g.count { dv[k] = dt * g[k] }
            grads.hidden.zero()
            _ = try transformer.vjp(hidden: latents[i].p, sigma: Array(repeating: schedule.sigmas[i], count: B), cond: cond,
                                    masks: masks, dOut: dv.p, grads: grads)
            for k in 0..<g.count { g[k] += grads.hidden[k] }
            latents.removeLast()     // x_{i+1} is no longer needed
            progress?(2 * n - i, 2 * n)
        }
        grads.hidden.p.update(from: g.p, count: g.count)
        return Result(sample: x0, loss: loss, grads: grads)
    }

    /// loss = mean((x_0 − target)²) and its gradient 2(x_0 − target)/numel.
    public static func meanSquaredError(target: Buffer<T>) -> Objective { Objectives.meanSquaredError(target: target) }
}

public enum Objectives {
    /// loss = mean((x − target)²) and its gradient 2(x − target)/numel, for any output x of `target`'s size.
    public static func meanSquaredError<T: Scalar>(target: Buffer<T>) -> (Buffer<T>) throws -> (loss: Double, dx0: Buffer<T>) {
        { x in
            guard x.count == target.count else {
                throw FluxError.badInput("target has \(target.count) values, the output \(x.count)")
            }
            let dx = Buffer<T>(uninitialized: x.count)
            var s = 0.0
            let scale = 2 / T(x.count)
            for i in 0..<x.count {
                let e = x[i] - target[i]
                s += Double(e) * Double(e)
                dx[i] = scale * e
            }
            return (s / Double(x.count), dx)
        }
    }
}
