/// Turns stored byte images (grey or RGB, any size) into a model's input: `x/255`, then `(x − mean)/std` per
/// channel, resized bilinearly to the model's side when it differs, grey repeated for a model with several input
/// channels and RGB reduced to luminance for a one-channel model; optionally shifted and mirrored (augmentation).
/// Written into [batch, channels, side, side] floats on the host, ready to upload.
public struct ImagePreparation: Sendable, Equatable {
    /// Fashion-MNIST's training-set statistics, the normalisation the fixtures were trained with.
    public static let fashionMNISTMean = 0.2860
    public static let fashionMNISTStd = 0.3530
    /// ImageNet's statistics (torchvision, timm's IMAGENET_DEFAULT_MEAN/STD), the default for ImageFolders.
    public static let imageNetMeans = [0.485, 0.456, 0.406]
    public static let imageNetStds = [0.229, 0.224, 0.225]
    /// timm's one-channel version of the ImageNet statistics: the average over the three channels.
    public static let imageNetGreyMean = 0.449
    public static let imageNetGreyStd = 0.226

    /// [channels]: subtracted after x/255, then divided by.
    public let means: [Double]
    public let stds: [Double]
    public let channels: Int
    /// Side of the square output image.
    public let side: Int

    /// The same mean and std for every channel.
    public init(mean: Double = fashionMNISTMean, std: Double = fashionMNISTStd, channels: Int, side: Int) {
        self.init(means: Array(repeating: mean, count: max(channels, 1)),
                  stds: Array(repeating: std, count: max(channels, 1)), channels: channels, side: side)
    }

    /// One mean and std per channel (`means.count == stds.count == channels`).
    public init(means: [Double], stds: [Double], channels: Int, side: Int) {
        precondition(channels >= 1 && side >= 1, "a model input has at least one channel and one pixel")
        precondition(means.count == channels && stds.count == channels, "one mean and one std per channel")
        self.means = means
        self.stds = stds
        self.channels = channels
        self.side = side
    }

    /// The first channel's statistics (all channels' for a grey data set).
    public var mean: Double { means[0] }
    public var std: Double { stds[0] }

    /// Floats per prepared image.
    public var elementsPerImage: Int { channels * side * side }

    /// Whether stored images of `sourceChannels` can feed this model: grey feeds any number of channels (repeated),
    /// RGB feeds three (as is) or one (luminance).
    public func accepts(sourceChannels: Int) -> Bool {
        sourceChannels == 1 || (sourceChannels == 3 && (channels == 3 || channels == 1))
    }

    /// Writes images `indices` of `images` to `output` [indices.count, channels, side, side], without augmentation.
    public func prepare(_ images: LabeledImages, indices: ArraySlice<Int>, into output: UnsafeMutableBufferPointer<Float>) {
        precondition(output.count >= indices.count * elementsPerImage, "output too small for the batch")
        guard let outputBase = output.baseAddress else { return }
        images.pixels.withUnsafeBufferPointer { pixels in
            for (slot, index) in indices.enumerated() {
                precondition(index >= 0 && index < images.count, "image index \(index) out of range")
                let plane = images.height * images.width
                let image = RawImage(pixels: UnsafeBufferPointer(rebasing: pixels[(index * plane)..<((index + 1) * plane)]),
                                     width: images.width, height: images.height, channels: 1)
                prepare(image, augmentation: .identity, into: outputBase + slot * elementsPerImage)
            }
        }
    }

    /// Writes one image to `output` [channels, side, side]: augmented image = mirror(shift(resize(image))), where the
    /// shift moves the content by (dx, dy) model pixels and fills the uncovered border with the background (stored
    /// value 0, as Fashion-MNIST's background and torchvision's zero padding), and the mirror flips left-right.
    /// `image.channels` must be accepted (`accepts(sourceChannels:)`).
    public func prepare(_ image: RawImage, augmentation: ImageAugmentation, into output: UnsafeMutablePointer<Float>) {
        precondition(accepts(sourceChannels: image.channels), "\(image.channels)-channel image for a \(channels)-channel model")
        precondition(image.pixels.count >= image.width * image.height * image.channels, "image pixels missing")
        guard let source = image.pixels.baseAddress else { return }
        let rows = Self.taps(from: image.height, to: side, shift: augmentation.dy, mirror: false)
        let columns = Self.taps(from: image.width, to: side, shift: augmentation.dx, mirror: augmentation.flip)
        // One affine map per channel for both steps: (x/255 − mean)/std. Bilinear weights sum to 1, so normalising
        // before or after resizing gives the same numbers. The background (stored 0) maps to `offset`.
        var gains = [Float](repeating: 0, count: channels)
        var offsets = [Float](repeating: 0, count: channels)
        for channel in 0..<channels {
            gains[channel] = Float(1 / (255 * stds[channel]))
            offsets[channel] = Float(-means[channel] / stds[channel])
        }
        let plane = side * side
        let sourceChannels = image.channels
        let rowStride = image.width * sourceChannels
        let luminance = sourceChannels == 3 && channels == 1
        for y in 0..<side {
            let row = rows[y]
            guard row.inside else {
                for channel in 0..<channels {
                    (output + channel * plane + y * side).update(repeating: offsets[channel], count: side)
                }
                continue
            }
            let top = source + row.low * rowStride
            let bottom = source + row.high * rowStride
            for x in 0..<side {
                let column = columns[x]
                let position = y * side + x
                guard column.inside else {
                    for channel in 0..<channels { output[channel * plane + position] = offsets[channel] }
                    continue
                }
                if sourceChannels == 1 {
                    let value = Self.bilinear(top, bottom, column.low, column.high, column.weight, row.weight)
                    for channel in 0..<channels { output[channel * plane + position] = value * gains[channel] + offsets[channel] }
                } else if luminance {
                    // ITU-R 601 luma, the weights of PIL's convert("L") (without its rounding to bytes).
                    let red = Self.bilinear(top, bottom, 3 * column.low, 3 * column.high, column.weight, row.weight)
                    let green = Self.bilinear(top + 1, bottom + 1, 3 * column.low, 3 * column.high, column.weight, row.weight)
                    let blue = Self.bilinear(top + 2, bottom + 2, 3 * column.low, 3 * column.high, column.weight, row.weight)
                    let grey = 0.299 * red + 0.587 * green + 0.114 * blue
                    output[position] = grey * gains[0] + offsets[0]
                } else {
                    for channel in 0..<3 {
                        let value = Self.bilinear(top + channel, bottom + channel, 3 * column.low, 3 * column.high,
                                                  column.weight, row.weight)
                        output[channel * plane + position] = value * gains[channel] + offsets[channel]
                    }
                }
            }
        }
    }

    @inline(__always)
    private static func bilinear(_ top: UnsafePointer<UInt8>, _ bottom: UnsafePointer<UInt8>, _ low: Int, _ high: Int,
                                 _ columnWeight: Float, _ rowWeight: Float) -> Float {
        let upper = Float(top[low]) * (1 - columnWeight) + Float(top[high]) * columnWeight
        let lower = Float(bottom[low]) * (1 - columnWeight) + Float(bottom[high]) * columnWeight
        return upper * (1 - rowWeight) + lower * rowWeight
    }

    /// Per output coordinate of the augmented image: whether it shows the image (not the shifted-in border) and,
    /// if so, the resampling taps of the resized coordinate it shows.
    static func taps(from input: Int, to output: Int, shift: Int, mirror: Bool) -> [(inside: Bool, low: Int, high: Int, weight: Float)] {
        let resized = resampling(from: input, to: output)
        return (0..<output).map { position in
            let shown = (mirror ? output - 1 - position : position) - shift
            guard shown >= 0 && shown < output else { return (false, 0, 0, 0) }
            let tap = resized[shown]
            return (true, tap.low, tap.high, tap.weight)
        }
    }

    /// For each output coordinate: the two source coordinates and the weight of the second, with PyTorch's
    /// `interpolate(mode="bilinear", align_corners=False)` rule (no antialiasing): source = (out + 0.5)·in/out − 0.5,
    /// clamped at 0. When sizes are equal this is the identity (weight 0).
    static func resampling(from input: Int, to output: Int) -> [(low: Int, high: Int, weight: Float)] {
        let scale = Double(input) / Double(output)
        return (0..<output).map { position in
            let source = max(0, (Double(position) + 0.5) * scale - 0.5)
            let low = min(Int(source), input - 1)
            let high = min(low + 1, input - 1)
            return (low, high, Float(source - Double(low)))
        }
    }
}

/// A stored image seen through a pointer: [height, width, channels] bytes, channels 1 (grey) or 3 (RGB).
public struct RawImage {
    public var pixels: UnsafeBufferPointer<UInt8>
    public var width: Int
    public var height: Int
    public var channels: Int

    public init(pixels: UnsafeBufferPointer<UInt8>, width: Int, height: Int, channels: Int) {
        self.pixels = pixels
        self.width = width
        self.height = height
        self.channels = channels
    }
}
