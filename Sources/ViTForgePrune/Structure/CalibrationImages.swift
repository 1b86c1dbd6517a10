import ViTForgeTrain

/// Images a pruning method looks at to score channels (VBP's statistics, Taylor's gradients): normalised, in a fixed
/// order, without augmentation. The data layer adapts its data sets to this; tests use `InMemoryImages`.
public protocol CalibrationImages {
    /// Images available.
    var count: Int { get }
    /// Scalars of one image (channels·size·size).
    var imageElements: Int { get }
    /// Images `start ..< start + count` as [count, channels, size, size] row-major, and their labels.
    func batch(start: Int, count: Int) throws -> (images: [Float], labels: [Int32])
}

/// Calibration images held in memory.
public struct InMemoryImages: CalibrationImages {
    public let images: [Float]
    public let labels: [Int32]
    public let imageElements: Int

    public init(images: [Float], labels: [Int32], imageElements: Int) throws {
        guard imageElements > 0, images.count == labels.count * imageElements else {
            throw PruneError.invalidCalibration(
                "\(images.count) scalars for \(labels.count) images of \(imageElements) scalars each")
        }
        self.images = images
        self.labels = labels
        self.imageElements = imageElements
    }

    public var count: Int { labels.count }

    public func batch(start: Int, count: Int) throws -> (images: [Float], labels: [Int32]) {
        guard start >= 0, count >= 0, start + count <= self.count else {
            throw PruneError.invalidCalibration("images \(start)..<\(start + count) requested, \(self.count) held")
        }
        return (Array(images[(start * imageElements)..<((start + count) * imageElements)]),
                Array(labels[start..<(start + count)]))
    }
}

extension CalibrationImages {
    /// Calls `body` with consecutive batches covering the first `limit` images (all when nil), in order. In a
    /// data-parallel run each rank gets only its share (`BatchShards`) of every batch, and `batchCount` says how
    /// many images the whole batch has (a share's means divide by it); a rank whose share of a batch is empty is not
    /// called for it. The caller sums its results over the ranks afterwards.
    func forEachBatch(limit: Int?, batchSize: Int, collective: any Collective = Collectives.world,
                      _ body: (_ images: [Float], _ labels: [Int32], _ count: Int, _ batchCount: Int) throws -> Void)
        throws {
        let total = min(limit ?? count, count)
        guard total > 0 else { throw PruneError.invalidCalibration("no calibration images") }
        guard batchSize > 0 else { throw PruneError.invalidCalibration("batch size \(batchSize) must be positive") }
        let pass = PassMonitor.begin("calibration", total: total)
        var start = 0
        while start < total {
            let n = min(batchSize, total - start)
            let share = collective.shard(of: n)
            if !share.isEmpty {
                let (images, labels) = try batch(start: start + share.lowerBound, count: share.count)
                try body(images, labels, share.count, n)
            }
            start += n
            try pass.advance(n)
        }
        pass.end()
    }
}
