import BLAS
import Foundation

/// The sinusoidal projection of diffusers' `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)`:
/// [cos(t·f_i) | sin(t·f_i)], f_i = exp(−ln(10000)·i/128). Computed in Double whatever the precision, as
/// the f64 reference does (diffusers' own fp32 version is ~1e-4 rad off at t ≈ 1000; flux.md §2.9).
func timestepProjection<T: Scalar>(_ t: Double, dim: Int = FluxConfig.timeProjDim, into out: UnsafeMutablePointer<T>) {
    let half = dim / 2
    for i in 0..<half {
        let f = Foundation.exp(-Foundation.log(10000.0) * Double(i) / Double(half))
        let a = t * f
        out[i] = T(Foundation.cos(a))
        out[half + i] = T(Foundation.sin(a))
    }
}

/// RoPE cos/sin tables [S, D] for position ids [S, axes]: per axis a with width d_a, angles id·θ^(−2j/d_a),
/// each repeated for the two elements of its adjacent pair. Computed in Double (diffusers does too).
public struct RopeTables<T: Scalar>: @unchecked Sendable {
    public let cos: Buffer<T>
    public let sin: Buffer<T>
    public let S: Int
    public let D: Int

    public init(ids: [Double], S: Int, axesDims: [Int], theta: Double = FluxConfig.ropeTheta) {
        let D = axesDims.reduce(0, +)
        let axes = axesDims.count
        precondition(ids.count == S * axes)
        self.S = S; self.D = D
        cos = Buffer(uninitialized: S * D)
        sin = Buffer(uninitialized: S * D)
        for s in 0..<S {
            var col = 0
            for (a, da) in axesDims.enumerated() {
                let pos = ids[s * axes + a]
                for j in 0..<(da / 2) {
                    let w = 1.0 / Foundation.pow(theta, Double(2 * j) / Double(da))
                    let ang = pos * w
                    let c = T(Foundation.cos(ang)), sn = T(Foundation.sin(ang))
                    cos[s * D + col] = c; cos[s * D + col + 1] = c
                    sin[s * D + col] = sn; sin[s * D + col + 1] = sn
                    col += 2
                }
            }
        }
    }
}
