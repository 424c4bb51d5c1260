import Foundation

/// SplitMix64 (Steele, Lea & Flood 2014): the project's one random number generator. Small, fast and seedable;
/// its output depends only on the seed, the same on every platform and Swift version (the standard library's
/// generator is neither seedable nor stable), so a seed fixes every draw: noise, mask draws, prompts, scenes.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// An independent stream for item `index` of a run seeded with `seed` (random access: item i does not depend
    /// on items 0..<i). state = mix(seed ^ mix(index + golden)).
    public init(seed: UInt64, index: UInt64) {
        state = SplitMix64.mix(seed ^ SplitMix64.mix(index &+ 0x9E37_79B9_7F4A_7C15))
    }

    /// The SplitMix64 output function (a bijective 64-bit finaliser).
    @inlinable public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * uniform() }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 0x1p-60), u2 = uniform()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }

    /// An integer in 0..<n, defined as next() % n (the bias, below 2^-50 for the sizes used here, is accepted so
    /// that the definition stays trivial to reproduce in other languages).
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        return Int(next() % UInt64(n))
    }

    /// Fisher–Yates from the back: for i = n-1 down to 1, swap a[i] with a[below(i+1)].
    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            a.swapAt(i, below(i + 1))
        }
    }
}

/// Peak resident set size of this process so far, in MiB (getrusage; Linux reports KiB, macOS bytes).
public func peakResidentMiB() -> Double {
    var u = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_maxrss) / 1024
    #else
    getrusage(RUSAGE_SELF, &u)
    return Double(u.ru_maxrss) / (1024 * 1024)
    #endif
}
