import BLAS

/// Backpropagation through a whole Euler sampling run with step-wise checkpointing: the forward run keeps
/// only the N+1 latents; the backward run replays one step at a time (forward with a tape, then its
/// vector–Jacobian product), so peak memory is the latents plus one step's activations, whatever N is.
///
/// With classifier-free guidance (`guidanceScale` ≠ 1) `cond` holds 2B rows — the B prompts, then B
/// unconditional (null-prompt) rows — and each step's velocity is v(∅) + s·(v(c) − v(∅)) for B latents;
/// the backward pass sends s·g to the conditional rows and (1 − s)·g to the unconditional ones.
public struct CheckpointedSampler<T: Scalar> {
    public let transformer: FluxTransformer<T>
    public let cond: FluxConditioning<T>
    public let schedule: FlowMatchSchedule
    public let masks: MaskSet<T>
    public let guidanceScale: Double

    public init(transformer: FluxTransformer<T>, cond: FluxConditioning<T>, schedule: FlowMatchSchedule,
                masks: MaskSet<T> = MaskSet(), guidanceScale: Double = 1) {
        self.transformer = transformer; self.cond = cond; self.schedule = schedule; self.masks = masks
        self.guidanceScale = guidanceScale
    }

    var guided: Bool { guidanceScale != 1 }
    /// Latents per run: the conditioning's batch, or half of it with guidance.
    public var batch: Int { guided ? cond.batch / 2 : cond.batch }

    /// The (guided) velocity at step i for latents x (batch × tokens × channels).
    func velocity(_ x: Buffer<T>, step i: Int) throws -> Buffer<T> {
        let s = schedule.sigmas[i]
        guard guided else {
            return try transformer.forward(hidden: x.p, sigma: Array(repeating: s, count: cond.batch), cond: cond, masks: masks)
        }
        let n = x.count
        let input = Buffer<T>(uninitialized: 2 * n)
        Guidance.duplicate(x.p, count: n, into: input.p)
        let v = try transformer.forward(hidden: input.p, sigma: Array(repeating: s, count: cond.batch), cond: cond, masks: masks)
        let out = Buffer<T>(uninitialized: n)
        Guidance.combine(v.p, count: n, scale: T(guidanceScale), into: out.p)
        return out
    }

    /// Runs the sampler from `start` (B latents) without gradients and returns x_0.
    public func sample(start: Buffer<T>) throws -> Buffer<T> {
        try validate(start)
        let x = start.copy()
        for i in 0..<schedule.steps {
            let v = try velocity(x, step: i)
            Euler.step(x.p, velocity: v.p, dt: T(schedule.sigmas[i + 1] - schedule.sigmas[i]), count: x.count)
        }
        return x
    }

    func validate(_ start: Buffer<T>) throws {
        if guided && cond.batch % 2 != 0 {
            throw FluxError.badInput("guided sampling needs the prompts' and the null prompt's rows (an even batch), got \(cond.batch)")
        }
        let expected = batch * cond.imageTokens * transformer.config.inChannels
        guard start.count == expected else {
            throw FluxError.badShape("start latent has \(start.count) values, expected \(expected) (batch \(batch))")
        }
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
    /// `progress` is called after each forward step and each replayed step (2N calls). Weight gradients
    /// accumulate into `weightAccumulator` when given (a training loop reuses one), else into a new one
    /// when `weightGradients`.
    public func gradient(
        start: Buffer<T>, maskGradients sites: [MaskSite], weightGradients: Bool = false,
        objective: Objective, progress: ((Int, Int) -> Void)? = nil, weightAccumulator: FluxWeights<T>? = nil
    ) throws -> Result {
        try validate(start)
        let n = schedule.steps, B = cond.batch
        var latents = [start.copy()]
        for i in 0..<n {
            let x = latents[i], v = try velocity(x, step: i)
            let next = Buffer<T>(uninitialized: x.count)
            Euler.step(from: x.p, velocity: v.p, dt: T(schedule.sigmas[i + 1] - schedule.sigmas[i]), into: next.p, count: x.count)
            latents.append(next)
            progress?(i + 1, 2 * n)
        }
        let x0 = latents[n]
        let (loss, dx0) = try objective(x0)
        guard dx0.count == x0.count else { throw FluxError.badShape("objective gradient has \(dx0.count) values, latent \(x0.count)") }
        let grads = FluxGradients<T>(config: transformer.config, batch: B, textTokens: cond.textTokens, imageTokens: cond.imageTokens,
                                     maskSites: sites,
                                     weightGradients: weightAccumulator ?? (weightGradients ? FluxWeights<T>.zeros(config: transformer.config) : nil))
        // g = dL/dx_{i+1}; x_{i+1} = x_i + dt_i·v(x_i)  ⇒  dL/dx_i = g + dt_i·(∂v/∂x_i)ᵀ g.
        let g = dx0.copy(), m = g.count
        let dv = Buffer<T>(uninitialized: guided ? 2 * m : m)
        let input = guided ? Buffer<T>(uninitialized: 2 * m) : nil
        let s = T(guidanceScale)
        for i in stride(from: n - 1, through: 0, by: -1) {
            let dt = T(schedule.sigmas[i + 1] - schedule.sigmas[i])
            var x = latents[i].p
            if let input {
                Guidance.duplicate(x, count: m, into: input.p)
                x = input.p
                Guidance.backward(g.p, count: m, scale: s, factor: dt, into: dv.p)
            } else {
                for k in 0..<m { dv[k] = dt * g[k] }
            }
            grads.hidden.zero()
            _ = try transformer.vjp(hidden: x, sigma: Array(repeating: schedule.sigmas[i], count: B), cond: cond,
                                    masks: masks, dOut: dv.p, grads: grads)
            for k in 0..<m { g[k] += guided ? grads.hidden[k] + grads.hidden[m + k] : grads.hidden[k] }
            latents.removeLast()     // x_{i+1} is no longer needed
            progress?(2 * n - i, 2 * n)
        }
        grads.hidden.p.update(from: g.p, count: m)
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
