/// SplitMix64 (Steele, Lea & Flood 2014): a tiny seedable generator whose output depends only on the
/// seed, the same on every platform and Swift version. All randomness in the world (dataset split,
/// scene sampling, placement) comes from it, so a seed fixes every byte of a scene.
public struct WorldRNG: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// An independent stream for item `index` of a run seeded with `seed` (random access: scene i of a
    /// sampler does not depend on scenes 0..<i). state = mix(seed ^ mix(index + golden)).
    public init(seed: UInt64, index: UInt64) {
        state = WorldRNG.mix(seed ^ WorldRNG.mix(index &+ 0x9E37_79B9_7F4A_7C15))
    }

    /// The SplitMix64 output function (a bijective 64-bit finaliser).
    @inlinable public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        return WorldRNG.mix(state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * uniform() }

    /// An integer in 0..<n, defined as next() % n (the bias, below 2^-50 for the sizes used here, is
    /// accepted so that the definition stays trivial to reproduce in other languages).
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
