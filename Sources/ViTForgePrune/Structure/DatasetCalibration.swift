import ViTForgeData

/// A data set's images in order, without augmentation, as calibration images (VBP's statistics, Taylor's gradients).
public struct DatasetCalibrationImages: CalibrationImages {
    public let dataset: Dataset

    public init(_ dataset: Dataset) { self.dataset = dataset }

    public var count: Int { dataset.count }
    public var imageElements: Int { dataset.elementsPerImage }

    public func batch(start: Int, count: Int) throws -> (images: [Float], labels: [Int32]) {
        var images = [Float](repeating: 0, count: count * imageElements)
        try images.withUnsafeMutableBufferPointer { try dataset.prepare(start..<(start + count), into: $0) }
        return (images, (start..<(start + count)).map { Int32(dataset.label($0)) })
    }
}
