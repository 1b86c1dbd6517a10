import ViTForgeResampling

/// Turns a decoded image (bytes, grey or RGB, any size) into a model's input [channels, side, side] floats, as timm
/// prepares images with Pillow and torchvision:
/// - evaluation (`transforms_imagenet_eval`): resize the shorter side to `floor(side / cropPct)` (the longer to
///   `int(that · long / short)`, torchvision's `Resize(int)`), centre-crop `side × side` (torchvision's
///   `CenterCrop`: offsets `round((resized − side) / 2)`, half to even);
/// - training on image folders (`RandomResizedCrop`): resize the augmentation's crop region to `side × side`;
/// then `x/255`, `(x − mean)/std` per channel, and the augmentation's shift and mirror (IDX data's translation).
///
/// Resizing is Pillow's `Image.resize` to the bit: separable antialiased passes (`ResamplingWeights`), horizontal
/// then vertical, with Pillow's 22-bit fixed-point weights and rounding to bytes after each pass. Channels are
/// converted as Pillow's `convert`: a grey image feeds every channel of a multi-channel model (`convert("RGB")`),
/// an RGB image feeds a one-channel model through ITU-R 601 luma (`convert("L")`). Alpha is dropped by the decoder
/// (as `convert("RGB")` drops it) and EXIF orientation is ignored, as Pillow's `open().convert("RGB")` ignores it.
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
    /// How images are resized.
    public let filter: ResamplingFilter
    /// Share of the resized image the evaluation crop keeps (timm `crop_pct`, in (0, 1]).
    public let cropPct: Double

    /// The same mean and std for every channel.
    public init(mean: Double = fashionMNISTMean, std: Double = fashionMNISTStd, channels: Int, side: Int,
                filter: ResamplingFilter = .bicubic, cropPct: Double = 1) {
        self.init(means: Array(repeating: mean, count: max(channels, 1)),
                  stds: Array(repeating: std, count: max(channels, 1)), channels: channels, side: side,
                  filter: filter, cropPct: cropPct)
    }

    /// One mean and std per channel (`means.count == stds.count == channels`).
    public init(means: [Double], stds: [Double], channels: Int, side: Int, filter: ResamplingFilter = .bicubic,
                cropPct: Double = 1) {
        precondition(channels >= 1 && side >= 1, "a model input has at least one channel and one pixel")
        precondition(means.count == channels && stds.count == channels, "one mean and one std per channel")
        precondition(cropPct > 0 && cropPct <= 1, "cropPct in (0, 1]")
        self.means = means
        self.stds = stds
        self.channels = channels
        self.side = side
        self.filter = filter
        self.cropPct = cropPct
    }

    /// The first channel's statistics (all channels' for a grey data set).
    public var mean: Double { means[0] }
    public var std: Double { stds[0] }

    /// Floats per prepared image.
    public var elementsPerImage: Int { channels * side * side }

    /// Side the evaluation transform resizes an image's shorter side to, timm's `floor(side / crop_pct)`.
    public var resizedShorterSide: Int { Int((Double(side) / cropPct).rounded(.down)) }

    /// The smallest shorter side a decoder may shrink an image to (JPEG DCT scaling) before handing it here, so
    /// that the transform still only shrinks: the evaluation resize target, or for training crops the side that a
    /// crop of the smallest area still spans (`crop` of `recipe`). A decoder that shrinks further would read less
    /// detail than timm, which decodes at full size.
    public func minimumDecodedShorterSide(training recipe: AugmentationRecipe? = nil) -> Int {
        guard let crop = recipe?.randomCrop else { return resizedShorterSide }
        // The crop's shorter side is at least sqrt(area · scale · min(ratio, 1/ratio)) of a square image's side.
        let share = crop.scale.lowerBound * min(crop.ratio.lowerBound, 1 / crop.ratio.upperBound)
        return Int((Double(side) / share.squareRoot()).rounded(.up))
    }

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

    /// Writes one image to `output` [channels, side, side]: augmented image = mirror(shift(resize(image))), where
    /// resize is the evaluation transform, or the augmentation's random crop resized to the side; the shift moves
    /// the content by (dx, dy) model pixels and fills the uncovered border with the background (stored value 0, as
    /// Fashion-MNIST's background and torchvision's zero padding), and the mirror flips left-right.
    /// `image.channels` must be accepted (`accepts(sourceChannels:)`). A pure function of its arguments.
    public func prepare(_ image: RawImage, augmentation: ImageAugmentation, into output: UnsafeMutablePointer<Float>) {
        precondition(accepts(sourceChannels: image.channels), "\(image.channels)-channel image for a \(channels)-channel model")
        precondition(image.width >= 1 && image.height >= 1, "an image has at least one pixel")
        precondition(image.pixels.count >= image.width * image.height * image.channels, "image pixels missing")
        let resized: [UInt8]
        let resizedChannels: Int
        if isIdentity(width: image.width, height: image.height, augmentation: augmentation) {
            // Pillow copies an image resized to its own size; IDX data at the model's side takes this path.
            guard image.channels == 3 && channels == 1 else {
                normalise(image.pixels, channels: image.channels, augmentation: augmentation, into: output)
                return
            }
            resized = Self.luminance(image)
            resizedChannels = 1
        } else if image.channels == 3 && channels == 1 {
            let (columns, rows) = resampling(width: image.width, height: image.height, augmentation: augmentation)
            let grey = Self.luminance(image)
            resized = grey.withUnsafeBufferPointer {
                Self.resize(RawImage(pixels: $0, width: image.width, height: image.height, channels: 1),
                            columns: columns, rows: rows)
            }
            resizedChannels = 1
        } else {
            let (columns, rows) = resampling(width: image.width, height: image.height, augmentation: augmentation)
            resized = Self.resize(image, columns: columns, rows: rows)
            resizedChannels = image.channels
        }
        resized.withUnsafeBufferPointer {
            normalise($0, channels: resizedChannels, augmentation: augmentation, into: output)
        }
    }

    /// Whether the transform leaves a `width × height` image's pixels as they are: a side × side image, no crop
    /// share (or one that keeps it whole), or a random crop that takes the whole side × side image.
    func isIdentity(width: Int, height: Int, augmentation: ImageAugmentation) -> Bool {
        guard width == side && height == side else { return false }
        if let crop = augmentation.crop {
            return crop.region(width: width, height: height) == CropRegion(x: 0, y: 0, width: side, height: side)
        }
        return resizedShorterSide == side
    }

    /// The horizontal and vertical weights that take an image of `width × height` to `side × side`.
    func resampling(width: Int, height: Int, augmentation: ImageAugmentation)
        -> (columns: ResamplingWeights, rows: ResamplingWeights) {
        if let crop = augmentation.crop {
            let region = crop.region(width: width, height: height)
            return (ResamplingWeights(filter: filter, inputCount: width, outputCount: side, start: region.x,
                                      span: region.width),
                    ResamplingWeights(filter: filter, inputCount: height, outputCount: side, start: region.y,
                                      span: region.height))
        }
        let resized = Self.shorterSideSize(width: width, height: height, shorter: resizedShorterSide)
        // torchvision's CenterCrop: Python's round (half to even) of the margin's half.
        let left = Int((Double(resized.width - side) / 2).rounded(.toNearestOrEven))
        let top = Int((Double(resized.height - side) / 2).rounded(.toNearestOrEven))
        return (ResamplingWeights(filter: filter, inputCount: width, outputCount: resized.width,
                                  outputs: left ..< left + side),
                ResamplingWeights(filter: filter, inputCount: height, outputCount: resized.height,
                                  outputs: top ..< top + side))
    }

    /// torchvision's `Resize(shorter)` output size: the shorter side becomes `shorter`, the longer
    /// `int(shorter · long / short)` (truncated).
    static func shorterSideSize(width: Int, height: Int, shorter: Int) -> (width: Int, height: Int) {
        if width <= height {
            return (shorter, Int(Double(shorter) * Double(height) / Double(width)))
        }
        return (Int(Double(shorter) * Double(width) / Double(height)), shorter)
    }

    /// Pillow's `convert("L")` of RGB bytes: (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    static func luminance(_ image: RawImage) -> [UInt8] {
        let count = image.width * image.height
        return [UInt8](unsafeUninitializedCapacity: count) { grey, initialised in
            for index in 0..<count {
                let red = Int(image.pixels[3 * index]), green = Int(image.pixels[3 * index + 1])
                let blue = Int(image.pixels[3 * index + 2])
                grey[index] = UInt8((red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16)
            }
            initialised = count
        }
    }

    /// Pillow's 8-bit weights: 22 fractional bits (32 − 8 − 2), each rounded half away from zero.
    private static let precisionBits = 22

    private static func fixedPoint(_ weights: ResamplingWeights) -> [[Int]] {
        weights.weights.map { taps in
            taps.map { Int(($0 < 0 ? -0.5 : 0.5) + $0 * Double(1 << precisionBits)) }
        }
    }

    /// Pillow's `clip8`: the fixed-point sum (which carries its own +0.5) to a byte, clamped.
    @inline(__always)
    private static func clip8(_ sum: Int) -> UInt8 {
        sum <= 0 ? 0 : UInt8(min(sum >> precisionBits, 255))
    }

    /// Resamples `image` to [rows.outputCount, columns.outputCount, image.channels] bytes: the horizontal pass over
    /// the rows the vertical pass reads, then the vertical pass, each rounded to bytes as Pillow does.
    static func resize(_ image: RawImage, columns: ResamplingWeights, rows: ResamplingWeights) -> [UInt8] {
        let channels = image.channels
        let outWidth = columns.outputCount, outHeight = rows.outputCount
        let firstRow = rows.first.min() ?? 0
        let lastRow = zip(rows.first, rows.weights).map { $0 + $1.count }.max() ?? firstRow
        let rowCount = max(lastRow - firstRow, 0)
        let columnTaps = fixedPoint(columns), rowTaps = fixedPoint(rows)
        let half = 1 << (precisionBits - 1)
        // [rowCount, outWidth, channels]: the horizontal pass.
        var horizontal = [UInt8](repeating: 0, count: rowCount * outWidth * channels)
        horizontal.withUnsafeMutableBufferPointer { out in
            for row in 0..<rowCount {
                let source = (firstRow + row) * image.width * channels
                for x in 0..<outWidth {
                    let start = source + columns.first[x] * channels
                    let taps = columnTaps[x]
                    for channel in 0..<channels {
                        var sum = half
                        for (tap, weight) in taps.enumerated() {
                            sum += Int(image.pixels[start + tap * channels + channel]) * weight
                        }
                        out[(row * outWidth + x) * channels + channel] = clip8(sum)
                    }
                }
            }
        }
        let rowStride = outWidth * channels
        return [UInt8](unsafeUninitializedCapacity: outHeight * rowStride) { out, initialised in
            horizontal.withUnsafeBufferPointer { source in
                for y in 0..<outHeight {
                    let taps = rowTaps[y]
                    let start = (rows.first[y] - firstRow) * rowStride
                    for position in 0..<rowStride {
                        var sum = half
                        for (tap, weight) in taps.enumerated() {
                            sum += Int(source[start + tap * rowStride + position]) * weight
                        }
                        out[y * rowStride + position] = clip8(sum)
                    }
                }
            }
            initialised = outHeight * rowStride
        }
    }

    /// Writes resized bytes [side, side, sourceChannels] as normalised floats [channels, side, side], shifted and
    /// mirrored by `augmentation`; a grey source fills every channel.
    private func normalise(_ resized: UnsafeBufferPointer<UInt8>, channels sourceChannels: Int,
                           augmentation: ImageAugmentation, into output: UnsafeMutablePointer<Float>) {
        // One affine map per channel: (x/255 − mean)/std. The background (stored 0) maps to `offset`.
        let gains = stds.map { Float(1 / (255 * $0)) }
        let offsets = (0..<channels).map { Float(-means[$0] / stds[$0]) }
        let plane = side * side
        for y in 0..<side {
            let sourceY = y - augmentation.dy
            for x in 0..<side {
                let sourceX = (augmentation.flip ? side - 1 - x : x) - augmentation.dx
                let position = y * side + x
                guard sourceY >= 0 && sourceY < side && sourceX >= 0 && sourceX < side else {
                    for channel in 0..<channels { output[channel * plane + position] = offsets[channel] }
                    continue
                }
                let pixel = (sourceY * side + sourceX) * sourceChannels
                for channel in 0..<channels {
                    let value = Float(resized[pixel + (sourceChannels == 1 ? 0 : channel)])
                    output[channel * plane + position] = value * gains[channel] + offsets[channel]
                }
            }
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
