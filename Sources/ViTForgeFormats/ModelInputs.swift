extension SafetensorsFile {
    /// A batch of images for `config`: tensor `name` of shape [N, channels, imageSize, imageSize] in any float dtype,
    /// N ≥ 1. The error names this file, the tensor and both shapes.
    public func images(_ name: String, for config: ViTConfig) throws -> (values: [Float], count: Int) {
        let shape = try self.shape(name)
        let expected = [shape.first ?? 1, config.inChannels, config.imageSize, config.imageSize]
        guard shape.count == 4, shape == expected else {
            throw ModelFileError(file: path, key: name, .wrongShape(expected: expected, actual: shape))
        }
        guard expected[0] >= 1 else { throw ModelFileError(file: path, key: name, .invalidEntry("holds no images")) }
        return (try floats(name), expected[0])
    }

    /// Class labels for `count` images: tensor `name` of shape [count], int64, int32 or a float dtype holding whole
    /// numbers, each in `0..<classes`.
    public func classLabels(_ name: String, count: Int, classes: Int) throws -> [Int32] {
        let entry = try self.entry(name) ?? { throw ModelFileError(file: path, key: name, .missingKey) }()
        guard entry.shape == [count] else {
            throw ModelFileError(file: path, key: name, .wrongShape(expected: [count], actual: entry.shape))
        }
        let values: [Int64]
        if entry.dtype.isReadableAsFloat {
            values = try floats(name).map { value in
                guard value.rounded() == value, let whole = Int64(exactly: value) else {
                    throw ModelFileError(file: path, key: name, .invalidEntry("label \(value) is not a whole number"))
                }
                return whole
            }
        } else {
            values = try int64s(name)
        }
        return try values.map { label in
            guard label >= 0, label < Int64(classes) else {
                throw ModelFileError(file: path, key: name,
                                     .invalidEntry("label \(label) outside the model's \(classes) classes"))
            }
            return Int32(label)
        }
    }
}
