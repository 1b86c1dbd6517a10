import Foundation
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
        case randomCrop = 4
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

/// How training images are augmented. IDX data (`--translate`, `--flip`): a shift by whole model pixels,
/// independently uniform in −maximumShift ... maximumShift on each axis, border filled with the background, then a
/// left-right mirror with probability `flipProbability`. Image folders (`--crop-scale`, `--flip`): timm's training
/// transform, `randomCrop` (RandomResizedCrop) then the mirror. `fashionMNISTFixture` is the recipe of
/// `fm-vit-c.json`'s `training`: "random translation ±2 px (pad with background value) and horizontal flip p=0.5"
/// (torchvision's `RandomCrop(28, padding=2)` then `RandomHorizontalFlip()` draws the same distribution).
public struct AugmentationRecipe: Sendable, Equatable, Codable {
    public var maximumShift: Int
    public var flipProbability: Double
    /// A random crop of each image, resized to the model's side; nil resizes the whole image (evaluation transform).
    public var randomCrop: RandomResizedCrop?

    public init(maximumShift: Int, flipProbability: Double, randomCrop: RandomResizedCrop? = nil) {
        self.maximumShift = maximumShift
        self.flipProbability = flipProbability
        self.randomCrop = randomCrop
    }

    public static let none = AugmentationRecipe(maximumShift: 0, flipProbability: 0)
    public static let fashionMNISTFixture = AugmentationRecipe(maximumShift: 2, flipProbability: 0.5)
    /// timm's training defaults for image folders: RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3) and a flip p=0.5.
    public static let imageFolderDefault = AugmentationRecipe(maximumShift: 0, flipProbability: 0.5,
                                                              randomCrop: .timmDefault)

    public var isNone: Bool { maximumShift == 0 && flipProbability <= 0 && randomCrop == nil }

    /// Why this recipe cannot run (nil when it can).
    public var problem: String? {
        if maximumShift < 0 || !(flipProbability >= 0 && flipProbability <= 1) { return "shift or flip out of range" }
        return randomCrop?.problem
    }

    /// The augmentation of the image at `index` (its position in the data set, not in the epoch's order) in
    /// `epoch`: a pure function of (seed, epoch, index).
    public func augmentation(seed: UInt64, epoch: Int, index: Int) -> ImageAugmentation {
        guard !isNone else { return .identity }
        var random = DataRandom(seed: seed, purpose: .augmentation, epoch, index)
        // Drawn only when cropping, so the IDX recipes draw exactly what they drew before crops existed.
        let crop = randomCrop.map { RandomResizedCrop.Draw(crop: $0, key: random.next()) }
        let span = 2 * maximumShift + 1
        let dx = random.below(span) - maximumShift
        let dy = random.below(span) - maximumShift
        let flip = random.unit() < flipProbability
        return ImageAugmentation(dx: dx, dy: dy, flip: flip, crop: crop)
    }
}

/// torchvision's `RandomResizedCrop` region choice (timm's `RandomResizedCropAndInterpolation` is the same): up to
/// 10 attempts of an area share uniform in `scale` and an aspect ratio log-uniform in `ratio`, sides
/// `round(sqrt(area · ratio))` × `round(sqrt(area / ratio))` (Python's round), kept when they fit, placed uniformly;
/// otherwise the whole image clamped to the ratio range, centred.
public struct RandomResizedCrop: Sendable, Hashable, Codable {
    /// Share of the image's area the crop covers.
    public var scale: ClosedRange<Double>
    /// Width / height of the crop.
    public var ratio: ClosedRange<Double>

    public init(scale: ClosedRange<Double>, ratio: ClosedRange<Double> = 0.75 ... 4.0 / 3.0) {
        self.scale = scale
        self.ratio = ratio
    }

    /// timm's defaults (`scale=(0.08, 1.0)`, `ratio=(3/4, 4/3)`).
    public static let timmDefault = RandomResizedCrop(scale: 0.08 ... 1)

    public var problem: String? {
        guard scale.lowerBound > 0, scale.upperBound <= 1, ratio.lowerBound > 0, ratio.upperBound.isFinite else {
            return "crop scale must lie in (0, 1] and the ratio be positive"
        }
        return nil
    }

    /// One image's crop: the key of the random stream that picks its region once the image's size is known.
    public struct Draw: Sendable, Hashable {
        public var crop: RandomResizedCrop
        public var key: UInt64

        public init(crop: RandomResizedCrop, key: UInt64) {
            self.crop = crop
            self.key = key
        }

        /// The region of a `width × height` image: a pure function of the key and the size.
        public func region(width: Int, height: Int) -> CropRegion {
            var random = DataRandom(seed: key, purpose: .randomCrop, width, height)
            return crop.region(width: width, height: height, random: &random)
        }
    }

    /// torchvision's `get_params`, with `random` as the source of its uniform draws.
    public func region(width: Int, height: Int, random: inout DataRandom) -> CropRegion {
        let area = Double(width * height)
        let logRatio = (low: log(ratio.lowerBound), high: log(ratio.upperBound))
        for _ in 0..<10 {
            let targetArea = area * (scale.lowerBound + (scale.upperBound - scale.lowerBound) * random.unit())
            let aspect = exp(logRatio.low + (logRatio.high - logRatio.low) * random.unit())
            let cropWidth = Int((targetArea * aspect).squareRoot().rounded(.toNearestOrEven))
            let cropHeight = Int((targetArea / aspect).squareRoot().rounded(.toNearestOrEven))
            if cropWidth > 0 && cropWidth <= width && cropHeight > 0 && cropHeight <= height {
                let y = random.below(height - cropHeight + 1)
                let x = random.below(width - cropWidth + 1)
                return CropRegion(x: x, y: y, width: cropWidth, height: cropHeight)
            }
        }
        // The fallback: the whole image, narrowed to the ratio range, centred.
        let imageRatio = Double(width) / Double(height)
        var cropWidth = width, cropHeight = height
        if imageRatio < ratio.lowerBound {
            cropHeight = Int((Double(width) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if imageRatio > ratio.upperBound {
            cropWidth = Int((Double(height) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return CropRegion(x: (width - cropWidth) / 2, y: (height - cropHeight) / 2, width: cropWidth, height: cropHeight)
    }
}

/// A rectangle of an image, in its pixels.
public struct CropRegion: Sendable, Hashable {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }
}

/// One image's augmentation: the region `crop` picks (whole image, evaluation transform, when nil) resized to the
/// model's side, content moved right by `dx` and down by `dy` model pixels, then mirrored if `flip`.
public struct ImageAugmentation: Sendable, Equatable, Hashable {
    public var dx: Int
    public var dy: Int
    public var flip: Bool
    public var crop: RandomResizedCrop.Draw?

    public init(dx: Int, dy: Int, flip: Bool, crop: RandomResizedCrop.Draw? = nil) {
        self.dx = dx
        self.dy = dy
        self.flip = flip
        self.crop = crop
    }

    public static let identity = ImageAugmentation(dx: 0, dy: 0, flip: false)
}
