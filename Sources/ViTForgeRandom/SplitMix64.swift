import Foundation

/// SplitMix64 (Steele, Lea & Flood 2014), the project's one seeded generator: initial weights, data order and
/// augmentation (through `DataRandom`'s keys), the seeding of the training generator, random pruning, bench inputs and
/// the tests' random values all come from it. Written out rather than taken from the standard library, whose
/// `SystemRandomNumberGenerator` is not seedable and whose `random(in:using:)` algorithms may change between
/// releases: a seed, a checkpoint and a test's expected numbers must mean the same sequence under a newer compiler.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The generator's whole state: each draw adds `increment` to it and returns its `finalise`d value.
    public private(set) var state: UInt64

    /// 2⁶⁴/φ, odd: the Weyl sequence's step, which visits every 64-bit state once.
    public static let increment: UInt64 = 0x9E37_79B9_7F4A_7C15

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= Self.increment
        return Self.finalise(state)
    }

    /// SplitMix64's output function (a variant of MurmurHash3's fmix64), a bijection that spreads every input bit
    /// over the whole word; also how `DataRandom` mixes its (seed, purpose, a, b) key.
    public static func finalise(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal (Box–Muller, one draw of the pair).
    public mutating func normal() -> Double {
        let u = max(unit(), Double.leastNormalMagnitude)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * unit())
    }

    /// Standard normal restricted to [−2, 2] by rejection, as `torch.nn.init.trunc_normal_(a=-2σ, b=2σ)`.
    public mutating func truncatedNormal() -> Double {
        while true {
            let value = normal()
            if abs(value) <= 2 { return value }
        }
    }
}
