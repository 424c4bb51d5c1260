import BLAS
import Foundation

/// How the σ grid is warped towards high noise (flux.md §3.2).
public enum TimeShift: Equatable, Sendable {
    /// FLUX.1-schnell: linspace(1, 1/N, N) unchanged.
    case none
    /// FLUX.1-dev: σ' = e^μ / (e^μ + (1/σ − 1)), μ from the image sequence length.
    case exponential(mu: Double)

    /// μ = linear interpolation from (256 → 0.5) to (4096 → 1.15), extrapolated beyond (diffusers `calculate_shift`).
    public static func dynamicMu(imageSeqLen L: Int, baseSeqLen: Int = 256, maxSeqLen: Int = 4096,
                                 baseShift: Double = 0.5, maxShift: Double = 1.15) -> Double {
        let m = (maxShift - baseShift) / Double(maxSeqLen - baseSeqLen)
        let b = baseShift - m * Double(baseSeqLen)
        return Double(L) * m + b
    }

    public static func dynamic(imageSeqLen L: Int) -> TimeShift { .exponential(mu: dynamicMu(imageSeqLen: L)) }
}

/// The flow-matching Euler schedule: N noise levels from 1 down, then a final 0.
public struct FlowMatchSchedule: Equatable, Sendable {
    public let sigmas: [Double]     // N + 1 values, the last exactly 0
    public var steps: Int { sigmas.count - 1 }

    public init(steps n: Int, shift: TimeShift) throws {
        guard n >= 1 else { throw FluxError.badInput("steps must be ≥ 1, got \(n)") }
        var s = (0..<n).map { i in n == 1 ? 1.0 : 1.0 + (1.0 / Double(n) - 1.0) * Double(i) / Double(n - 1) }
        if case .exponential(let mu) = shift {
            let em = Foundation.exp(mu)
            s = s.map { em / (em + (1 / $0 - 1)) }
        }
        sigmas = s + [0]
    }
}

/// The Euler update of the flow-matching sampler, written once: x ← x + (σ_{i+1} − σ_i)·v(x, σ_i). Sampling,
/// generation, the checkpointed backward and every erasure objective step with it.
public enum Euler {
    /// x ← x + dt·v over n values.
    @inlinable
    public static func step<T: Scalar>(_ x: UnsafeMutablePointer<T>, velocity v: UnsafePointer<T>, dt: T, count n: Int) {
        for j in 0..<n { x[j] += dt * v[j] }
    }

    /// next = x + dt·v over n values (x unchanged).
    @inlinable
    public static func step<T: Scalar>(from x: UnsafePointer<T>, velocity v: UnsafePointer<T>, dt: T, into next: UnsafeMutablePointer<T>, count n: Int) {
        for j in 0..<n { next[j] = x[j] + dt * v[j] }
    }
}

/// Classifier-free guidance, written once. A guided batch holds the prompts' rows, then as many
/// unconditional (null-prompt) rows; the guided velocity is v(∅) + s·(v(c) − v(∅)).
public enum Guidance {
    /// The model's input for n latent values under guidance: the latents twice (conditional rows, then unconditional).
    @inlinable
    public static func duplicate<T: Scalar>(_ x: UnsafePointer<T>, count n: Int, into input: UnsafeMutablePointer<T>) {
        input.update(from: x, count: n)
        (input + n).update(from: x, count: n)
    }

    /// out = v_u + s·(v_c − v_u) for v = [v_c (n values), v_u (n values)].
    @inlinable
    public static func combine<T: Scalar>(_ v: UnsafePointer<T>, count n: Int, scale s: T, into out: UnsafeMutablePointer<T>) {
        for j in 0..<n { out[j] = v[n + j] + s * (v[j] - v[n + j]) }
    }

    /// The backward pass of `combine` for an output gradient g scaled by f: d v_c = s·f·g, d v_u = (1 − s)·f·g
    /// (2n values; f is the Euler step's dt in the sampler's backward, 1 for a loss on the velocity itself).
    @inlinable
    public static func backward<T: Scalar>(_ g: UnsafePointer<T>, count n: Int, scale s: T, factor f: T, into dv: UnsafeMutablePointer<T>) {
        for k in 0..<n { dv[k] = s * f * g[k]; dv[n + k] = (1 - s) * f * g[k] }
    }
}

/// One Euler step per `next()`: x ← x + (σ_{i+1} − σ_i)·v(x, σ_i). An iterator so callers can show progress,
/// keep intermediate latents (the checkpointed backward stores exactly these) or stop early.
public final class EulerSampler<T: Scalar>: IteratorProtocol, Sequence {
    public struct Step {
        public let index: Int
        public let sigma: Double
        public let nextSigma: Double
        public let latent: Buffer<T>    // after this step
    }

    public let transformer: FluxTransformer<T>
    public let cond: FluxConditioning<T>
    public let schedule: FlowMatchSchedule
    public let masks: MaskSet<T>
    public private(set) var latent: Buffer<T>
    public private(set) var index = 0
    public private(set) var error: Error?

    public init(transformer: FluxTransformer<T>, cond: FluxConditioning<T>, schedule: FlowMatchSchedule,
                start: Buffer<T>, masks: MaskSet<T> = MaskSet()) {
        self.transformer = transformer; self.cond = cond; self.schedule = schedule; self.masks = masks
        latent = start.copy()
    }

    public func next() -> Step? {
        guard index < schedule.steps, error == nil else { return nil }
        let i = index
        do {
            try step()
        } catch {
            self.error = error
            return nil
        }
        return Step(index: i, sigma: schedule.sigmas[i], nextSigma: schedule.sigmas[i + 1], latent: latent)
    }

    /// Runs the next step (and advances), throwing instead of storing the error.
    public func step() throws {
        guard index < schedule.steps else { throw FluxError.badInput("the sampler has already run all \(schedule.steps) steps") }
        let s = schedule.sigmas[index], sn = schedule.sigmas[index + 1]
        let v = try transformer.forward(hidden: latent.p, sigma: Array(repeating: s, count: cond.batch), cond: cond, masks: masks)
        guard v.count == latent.count else {
            throw FluxError.badShape("model output has \(v.count) values but the latent has \(latent.count) (out_channels ≠ in_channels cannot be sampled)")
        }
        let next = latent.copy()
        Euler.step(next.p, velocity: v.p, dt: T(sn - s), count: next.count)
        latent = next
        index += 1
    }

    /// Runs all remaining steps and returns the final latent.
    public func run(progress: ((Int, Int) -> Void)? = nil) throws -> Buffer<T> {
        while index < schedule.steps {
            try step()
            progress?(index, schedule.steps)
        }
        return latent
    }
}
