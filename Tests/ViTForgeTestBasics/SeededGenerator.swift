import ViTForgeRandom

/// The tests' random source: the product's own SplitMix64 behind `RandomNumberGenerator`, so every run draws the same
/// "random" inputs, models and keep-sets from one seed and a failure reproduces.
public struct SeededGenerator: RandomNumberGenerator {
    private var core: SplitMix64

    public init(seed: UInt64) { core = SplitMix64(seed: seed) }

    public mutating func next() -> UInt64 { core.next() }

    /// Uniform in [-1, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) * 2 - 1 }

    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// A random subset of `0..<size` with `count` elements, ascending.
    public mutating func subset(of size: Int, count: Int) -> [Int] {
        var all = Array(0..<size)
        for i in 0..<count { all.swapAt(i, i + below(size - i)) }
        return all.prefix(count).sorted()
    }

    /// A random non-empty proper subset size when possible (`size` 1: 1).
    public mutating func keepCount(_ size: Int) -> Int { size == 1 ? 1 : 1 + below(size - 1) }

    /// `count` uniform values in `range`, each exactly representable as a Float, so that the float64 reference and
    /// the backend start from the very same numbers.
    public mutating func values(_ count: Int, in range: ClosedRange<Float> = -1 ... 1) -> [Double] {
        (0 ..< count).map { _ in Double(Float.random(in: range, using: &self)) }
    }

    /// `count` distinct indices from `0 ..< upperBound`, in random order.
    public mutating func distinctIndices(_ count: Int, below upperBound: Int) -> [Int] {
        Array(Array(0 ..< upperBound).shuffled(using: &self).prefix(count))
    }
}
