import ViTForgeDevice
import ViTForgeFormats

extension VisionTransformer {
    /// Runs the model over `count` images, `batchSize` at a time (the last batch may be smaller).
    /// `prepare(range, into)` writes images `range` as [range.count, channels, imageSize, imageSize] normalised floats
    /// on the host; `consume(range, logits)` receives their logits [range.count, classes]. One host staging buffer
    /// and one device buffer are allocated for the whole run.
    public func logits(count: Int, batchSize: Int,
                       prepare: (Range<Int>, UnsafeMutableBufferPointer<Float>) throws -> Void,
                       consume: (Range<Int>, UnsafeBufferPointer<Float>) throws -> Void) throws {
        guard batchSize >= 1 else { throw BackendError.invalidArgument("batch size \(batchSize) must be at least 1") }
        guard count > 0 else { return }
        let perImage = config.inChannels * config.imageSize * config.imageSize
        let capacity = min(batchSize, count)
        var staging = [Float](repeating: 0, count: capacity * perImage)
        var logits = [Float](repeating: 0, count: capacity * config.classes)
        let images = try backend.allocate(capacity * perImage)
        var start = 0
        while start < count {
            let range = start..<min(start + capacity, count)
            let elements = range.count * perImage
            try staging.withUnsafeMutableBufferPointer { host in
                try prepare(range, UnsafeMutableBufferPointer(rebasing: host[0..<elements]))
                try backend.upload(UnsafeBufferPointer(rebasing: host[0..<elements]), to: images, offset: 0)
            }
            let output = try forward(images: images, batch: range.count, keepingActivations: false)
            let classes = range.count * config.classes
            try logits.withUnsafeMutableBufferPointer { host in
                let part = UnsafeMutableBufferPointer(rebasing: host[0..<classes])
                try backend.download(output, offset: 0, into: part)
                try consume(range, UnsafeBufferPointer(part))
            }
            start = range.upperBound
        }
    }
}
