/// The separable, antialiased resampling of Pillow's `Image.resize` (BICUBIC, BILINEAR), which PyTorch's
/// `interpolate(..., antialias=True)` reproduces in floating point: each output sample is a weighted sum of the input
/// samples under a filter centred on it, and when shrinking the filter widens by the shrink factor, so every input
/// sample contributes (no aliasing). Images (timm's eval and training transforms run Pillow) and position embeddings
/// (timm's `resample_abs_pos_embed`, antialias on by default) both resample through these weights.
public enum ResamplingFilter: String, Sendable, CaseIterable, Codable {
    /// Keys cubic convolution with a = −0.5 (Pillow's and PyTorch-antialias's bicubic; support 2).
    case bicubic
    /// The triangle filter (support 1).
    case bilinear
    /// The input sample under the output sample's centre (Pillow's NEAREST: no filter, no antialiasing).
    case nearest

    /// Half-width of the filter at scale 1, in input samples.
    var support: Double {
        switch self {
        case .bicubic: return 2
        case .bilinear: return 1
        case .nearest: return 0.5
        }
    }

    func weight(_ x: Double) -> Double {
        let x = abs(x)
        switch self {
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .nearest:
            return x < 0.5 ? 1 : 0
        }
    }
}

/// For every output sample of one axis: the first input sample it reads and the weights of it and the next ones
/// (normalised to sum 1).
public struct ResamplingWeights: Sendable, Equatable {
    /// [output]: index of the first input sample under output sample i's filter.
    public let first: [Int]
    /// [output]: the weights of input samples first[i], first[i] + 1, ...
    public let weights: [[Double]]

    public var outputCount: Int { first.count }

    /// Weights that map input samples `start ..< start + span` (a crop of an axis of `inputCount` samples; the whole
    /// axis by default) onto `outputCount` samples, as Pillow's `resize(box=...)` with an integer box does after a
    /// `crop`: only samples inside the span are read. Computes output samples `outputs` only (a centre crop of the
    /// resized axis needs only its window).
    public init(filter: ResamplingFilter, inputCount: Int, outputCount: Int, start: Int = 0, span: Int? = nil,
                outputs: Range<Int>? = nil) {
        let span = span ?? inputCount - start
        precondition(span >= 1 && outputCount >= 1 && start >= 0 && start + span <= inputCount,
                     "resampling needs a non-empty input span inside the axis and at least one output")
        let outputs = outputs ?? 0 ..< outputCount
        let scale = Double(span) / Double(outputCount)
        var first: [Int] = [], weights: [[Double]] = []
        first.reserveCapacity(outputs.count)
        weights.reserveCapacity(outputs.count)
        for position in outputs {
            let centre = (Double(position) + 0.5) * scale
            if filter == .nearest {
                // Pillow's NEAREST resize is an affine transform that reads the sample under the centre.
                first.append(start + min(Int(centre), span - 1))
                weights.append([1])
                continue
            }
            let filterScale = max(scale, 1)
            // Multiplied by the inverse, as both libraries do, so the weights agree to the last bit.
            let inverseScale = 1 / filterScale
            let support = filter.support * filterScale
            // Truncation toward zero, as the C casts of Pillow and PyTorch.
            let low = max(Int(centre - support + 0.5), 0)
            let high = min(Int(centre + support + 0.5), span)
            var taps = (low ..< high).map { filter.weight((Double($0) - centre + 0.5) * inverseScale) }
            let total = taps.reduce(0, +)
            if total != 0 { taps = taps.map { $0 / total } }
            first.append(start + low)
            weights.append(taps)
        }
        self.first = first
        self.weights = weights
    }
}
