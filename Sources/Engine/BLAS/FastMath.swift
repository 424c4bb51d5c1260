import RealModule

/// Element-wise transcendental functions for the hot loops (GELU, SiLU, softmax). libm's `expf` is a
/// non-inlined call per element; on CPU that alone would cost more than the matrix products of a small
/// FLUX model. Float uses a branch-free polynomial the compiler can vectorise (max relative error about
/// 2e-7, i.e. ~1 ulp); Double keeps libm, because f64 runs exist to be exact, not fast.
public protocol FastMath {
    static func fastExp(_ x: Self) -> Self
}

extension Float: FastMath {
    @inlinable @inline(__always)
    public static func fastExp(_ x: Float) -> Float {
        // exp(x) = 2^n · exp(r), r = x − n·ln2 ∈ [−ln2/2, ln2/2]; Cody–Waite split of ln2.
        let xc = Swift.min(Swift.max(x, -87.3), 88.3)
        // Round to nearest by adding and subtracting 1.5·2²³ (exact for |t| < 2²²); `rounded()` would be a
        // libm call that stops the loop from vectorising.
        let t = xc * 1.442695041
        let n = (t + 12_582_912) - 12_582_912
        let r = (xc - n * 0.693145752) - n * 1.42860677e-06
        // Taylor to degree 7: truncation error < 6e-9 on the reduced interval.
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let scale = Float(bitPattern: UInt32(bitPattern: Int32(n) &+ 127) &<< 23)
        return p * scale
    }
}

extension Double: FastMath {
    @inlinable @inline(__always)
    public static func fastExp(_ x: Double) -> Double { Double.exp(x) }
}
