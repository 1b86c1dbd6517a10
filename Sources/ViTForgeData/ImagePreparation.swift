/// Turns grey-scale byte images into a model's input: `x/255`, then `(x − mean)/std`, resized bilinearly to the
/// model's side when it differs, and the grey channel repeated for a model with several input channels.
/// Written into [batch, channels, side, side] floats on the host, ready to upload.
public struct ImagePreparation: Sendable {
    /// Fashion-MNIST's training-set statistics, the normalisation the fixtures were trained with.
    public static let fashionMNISTMean = 0.2860
    public static let fashionMNISTStd = 0.3530

    public let mean: Double
    public let std: Double
    public let channels: Int
    /// Side of the square output image.
    public let side: Int

    public init(mean: Double = fashionMNISTMean, std: Double = fashionMNISTStd, channels: Int, side: Int) {
        self.mean = mean
        self.std = std
        self.channels = channels
        self.side = side
    }

    /// Floats per prepared image.
    public var elementsPerImage: Int { channels * side * side }

    /// Writes images `indices` of `images` to `output` [indices.count, channels, side, side].
    public func prepare(_ images: LabeledImages, indices: ArraySlice<Int>, into output: UnsafeMutableBufferPointer<Float>) {
        precondition(output.count >= indices.count * elementsPerImage, "output too small for the batch")
        let rows = Self.resampling(from: images.height, to: side)
        let columns = Self.resampling(from: images.width, to: side)
        // One affine map for both steps: (x/255 − mean)/std. Bilinear weights sum to 1, so normalising before or
        // after resizing gives the same numbers.
        let gain = Float(1 / (255 * std))
        let offset = Float(-mean / std)
        let plane = side * side
        let sourcePlane = images.height * images.width
        images.pixels.withUnsafeBufferPointer { pixels in
            guard let base = pixels.baseAddress else { return }
            for (slot, index) in indices.enumerated() {
                precondition(index >= 0 && index < images.count, "image index \(index) out of range")
                let source = base + index * sourcePlane
                let first = slot * elementsPerImage
                for y in 0..<side {
                    let row = rows[y]
                    let top = source + row.low * images.width
                    let bottom = source + row.high * images.width
                    for x in 0..<side {
                        let column = columns[x]
                        let upper = Float(top[column.low]) * (1 - column.weight) + Float(top[column.high]) * column.weight
                        let lower = Float(bottom[column.low]) * (1 - column.weight)
                            + Float(bottom[column.high]) * column.weight
                        let value = (upper * (1 - row.weight) + lower * row.weight) * gain + offset
                        output[first + y * side + x] = value
                    }
                }
                for channel in 1..<max(channels, 1) {
                    for position in 0..<plane {
                        output[first + channel * plane + position] = output[first + position]
                    }
                }
            }
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
