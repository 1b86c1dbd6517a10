import ViTForgeRandom

/// Random choices of the data pipeline as pure functions of (seed, purpose, a, b): the order of epoch e is
/// `DataRandom(seed, .order, e, 0)`'s shuffle and image i's augmentation in epoch e comes from
/// `DataRandom(seed, .augmentation, e, i)`, so a run resumed at any step sees the same images, in the same order,
/// augmented the same way, whatever was computed before and on whichever thread.
///
/// A `SplitMix64` stream keyed by the four inputs, with its own `below` and `permutation` rather than
/// `Int.random(in:using:)` or `shuffled(using:)`, whose algorithms the standard library may change between releases:
/// a checkpoint must reproduce its data order under a newer compiler too.
public struct DataRandom: RandomNumberGenerator, Sendable {
    public enum Purpose: UInt64, Sendable {
        case order = 1
        case augmentation = 2
        case validationSplit = 3
    }

    private var stream: SplitMix64

    public init(seed: UInt64, purpose: Purpose, _ a: Int, _ b: Int) {
        // Each input goes through the finaliser before the next is mixed in, so (a, b) and (b, a) differ and
        // neighbouring seeds give unrelated streams.
        var key = SplitMix64.finalise(seed &+ SplitMix64.increment)
        key = SplitMix64.finalise(key ^ purpose.rawValue)
        key = SplitMix64.finalise(key ^ UInt64(bitPattern: Int64(a)))
        key = SplitMix64.finalise(key ^ UInt64(bitPattern: Int64(b)))
        stream = SplitMix64(seed: key)
    }

    public mutating func next() -> UInt64 { stream.next() }

    /// Uniform in 0..<bound (bound ≥ 1), unbiased: Lemire's multiply-shift with rejection.
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound >= 1, "empty range")
        let range = UInt64(bound)
        var product = next().multipliedFullWidth(by: range)
        if product.low < range {
            let threshold = (0 &- range) % range
            while product.low < threshold { product = next().multipliedFullWidth(by: range) }
        }
        return Int(product.high)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { stream.unit() }

    /// A uniformly random permutation of 0..<count (Fisher–Yates, from the back).
    public mutating func permutation(_ count: Int) -> [Int] {
        var order = Array(0..<count)
        var position = count - 1
        while position > 0 {
            order.swapAt(position, below(position + 1))
            position -= 1
        }
        return order
    }
}

/// How training images are augmented: a shift by whole model pixels, independently uniform in
/// −maximumShift ... maximumShift on each axis, border filled with the background, then a left-right mirror with
/// probability `flipProbability`. `fashionMNISTFixture` is the recipe of `fm-vit-c.json`'s `training`:
/// "random translation ±2 px (pad with background value) and horizontal flip p=0.5" (torchvision's
/// `RandomCrop(28, padding=2)` then `RandomHorizontalFlip()` draws the same distribution).
public struct AugmentationRecipe: Sendable, Equatable, Codable {
    public var maximumShift: Int
    public var flipProbability: Double

    public init(maximumShift: Int, flipProbability: Double) {
        self.maximumShift = maximumShift
        self.flipProbability = flipProbability
    }

    public static let none = AugmentationRecipe(maximumShift: 0, flipProbability: 0)
    public static let fashionMNISTFixture = AugmentationRecipe(maximumShift: 2, flipProbability: 0.5)

    public var isNone: Bool { maximumShift == 0 && flipProbability <= 0 }

    /// The augmentation of the image at `index` (its position in the data set, not in the epoch's order) in
    /// `epoch`: a pure function of (seed, epoch, index).
    public func augmentation(seed: UInt64, epoch: Int, index: Int) -> ImageAugmentation {
        guard !isNone else { return .identity }
        var random = DataRandom(seed: seed, purpose: .augmentation, epoch, index)
        let span = 2 * maximumShift + 1
        let dx = random.below(span) - maximumShift
        let dy = random.below(span) - maximumShift
        let flip = random.unit() < flipProbability
        return ImageAugmentation(dx: dx, dy: dy, flip: flip)
    }
}

/// One image's augmentation: content moved right by `dx` and down by `dy` model pixels, then mirrored if `flip`.
public struct ImageAugmentation: Sendable, Equatable, Hashable {
    public var dx: Int
    public var dy: Int
    public var flip: Bool

    public init(dx: Int, dy: Int, flip: Bool) {
        self.dx = dx
        self.dy = dy
        self.flip = flip
    }

    public static let identity = ImageAugmentation(dx: 0, dy: 0, flip: false)
}
