import ViTForgeFormats
import ViTForgeResampling

/// Another input size for a trained model: timm's `resample_abs_pos_embed` (what `timm.create_model(...,
/// img_size=N)` does to a checkpoint). The patch tokens' embeddings, seen as a grid × grid image of `width`
/// channels, are resized to the new grid with `F.interpolate(mode="bicubic", antialias=True)` (timm's default;
/// Pillow's a = −0.5 cubic, widened when shrinking); the class and distillation tokens' embeddings are kept as they
/// are. Every other parameter is independent of the input size.
extension ViTWeights {
    public func resampled(toInputSize size: Int) throws -> ViTWeights {
        var resized = config
        resized.imageSize = size
        guard size >= 1, size % config.patchSize == 0 else {
            throw ModelFileError(file: sourcePath ?? "model", .invalidConfig(
                "input size \(size) is not a positive multiple of the patch size \(config.patchSize)"))
        }
        guard config.tokenSets == nil || size == config.imageSize else {
            throw ModelFileError(file: sourcePath ?? "model", .invalidConfig(
                "token-pruned: its token sets are positions on the \(config.gridSize)² patch grid; "
                + "resample the model before pruning its tokens"))
        }
        if let problem = resized.problem() { throw ModelFileError(file: sourcePath ?? "model", .invalidConfig(problem)) }
        guard let positions = self["pos_embed"] else {
            throw ModelFileError(file: sourcePath ?? "model", key: "pos_embed", .missingKey)
        }
        var tensors: [String: HostTensor] = [:]
        for spec in config.parameterSpecs() { tensors[spec.name] = self[spec.name] }
        tensors["pos_embed"] = HostTensor(
            shape: [1, resized.tokens, config.residualWidth],
            values: Self.resamplePositions(positions.values, prefixTokens: config.prefixTokens,
                                           width: config.residualWidth, from: config.gridSize, to: resized.gridSize))
        return try ViTWeights(config: resized, tensors: tensors)
    }

    /// [prefix + from², width] → [prefix + to², width]: the prefix rows copied, the grid resampled (float64
    /// arithmetic, float32 result).
    static func resamplePositions(_ values: [Float], prefixTokens: Int, width: Int, from: Int, to: Int) -> [Float] {
        precondition(values.count == (prefixTokens + from * from) * width, "position embedding of another shape")
        let weights = ResamplingWeights(filter: .bicubic, inputCount: from, outputCount: to)
        var result = Array(values[0 ..< prefixTokens * width])
        result.reserveCapacity((prefixTokens + to * to) * width)
        // Separable: along columns first ([from, to, width]), then along rows.
        var columns = [Double](repeating: 0, count: from * to * width)
        for row in 0 ..< from {
            for x in 0 ..< to {
                for (tap, weight) in weights.weights[x].enumerated() {
                    let source = (prefixTokens + row * from + weights.first[x] + tap) * width
                    let target = (row * to + x) * width
                    for channel in 0 ..< width { columns[target + channel] += weight * Double(values[source + channel]) }
                }
            }
        }
        for y in 0 ..< to {
            for x in 0 ..< to {
                var sum = [Double](repeating: 0, count: width)
                for (tap, weight) in weights.weights[y].enumerated() {
                    let source = ((weights.first[y] + tap) * to + x) * width
                    for channel in 0 ..< width { sum[channel] += weight * columns[source + channel] }
                }
                result += sum.map { Float($0) }
            }
        }
        return result
    }
}
