import Dispatch

/// Training batches of a data set: per epoch a seeded shuffle, cut into batches of `maximumBatch` images, each image
/// augmented from (seed, epoch, its index). Every batch is a pure function of (seed, epoch, index), so a run resumed
/// at any step gets bit-identical batches. While the caller works on batch i, batch i + 1 (or the next epoch's first)
/// is prepared on a background thread; a request for any other batch is prepared on the spot, with the same result.
///
/// The last partial batch of an epoch is kept by default (`dropLast: false`), as the fixture recipe's PyTorch loop
/// did ("last partial batch kept": 469 steps of 128 for 60,000 images).
///
/// Calls must come from one thread at a time (the training loop); the prefetching happens inside.
public final class BatchLoader {
    public let dataset: Dataset
    /// The most images one batch holds.
    public let maximumBatch: Int
    /// The seed of the data order and augmentation, recorded in checkpoints.
    public let dataSeed: UInt64
    public let shuffle: Bool
    public let augmentation: AugmentationRecipe
    public let dropLast: Bool
    public let prefetches: Bool

    /// Floats per image, `channels · side · side` of the model.
    public var imageElements: Int { dataset.elementsPerImage }

    /// Batches in every epoch (the last may be partial unless `dropLast`).
    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / maximumBatch : (dataset.count + maximumBatch - 1) / maximumBatch
    }

    private struct BatchKey: Equatable {
        var epoch: Int
        var index: Int
        /// Which share of the batch (`BatchShards`): part 0 of 1 is the whole batch.
        var part = 0
        var parts = 1
    }

    /// The prefetched batch: [maximumBatch, channels, side, side] images and [maximumBatch] labels, written only by
    /// the background job, read only after waiting for it.
    private let stagedImages: UnsafeMutableBufferPointer<Float>
    private let stagedLabels: UnsafeMutableBufferPointer<Int32>
    private var stagedCount = (shard: 0, batch: 0)
    private var pending: (key: BatchKey, done: DispatchGroup)?
    private let worker = DispatchQueue(label: "ViTForgeData.BatchLoader", qos: .userInitiated)
    /// The last epoch's order, reused by its batches; touched by one preparation at a time (the caller waits for
    /// the background job before preparing anything itself).
    private var cachedOrder: (epoch: Int, order: [Int])?

    public init(dataset: Dataset, batchSize: Int, seed: UInt64, shuffle: Bool = true,
                augmentation: AugmentationRecipe = .none, dropLast: Bool = false, prefetch: Bool = true) throws {
        guard batchSize >= 1 else { throw DataFileError(file: dataset.name, .invalidRequest("batch size \(batchSize) < 1")) }
        guard dataset.count >= (dropLast ? batchSize : 1) else {
            throw DataFileError(file: dataset.name, .invalidRequest(
                "\(dataset.count) images make no full batch of \(batchSize)"))
        }
        guard augmentation.maximumShift >= 0, augmentation.flipProbability >= 0, augmentation.flipProbability <= 1 else {
            throw DataFileError(file: dataset.name, .invalidRequest("augmentation \(augmentation) is out of range"))
        }
        self.dataset = dataset
        self.maximumBatch = batchSize
        self.dataSeed = seed
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.dropLast = dropLast
        self.prefetches = prefetch
        stagedImages = .allocate(capacity: prefetch ? batchSize * dataset.elementsPerImage : 0)
        stagedLabels = .allocate(capacity: prefetch ? batchSize : 0)
    }

    deinit {
        pending?.done.wait()
        stagedImages.deallocate()
        stagedLabels.deallocate()
    }

    /// Epoch `epoch`'s order: positions in the data set, a seeded permutation (identity without shuffling).
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return Array(0..<dataset.count) }
        var random = DataRandom(seed: dataSeed, purpose: .order, epoch, 0)
        return random.permutation(dataset.count)
    }

    /// The augmentation of data set position `position` in `epoch`.
    public func augmentation(epoch: Int, position: Int) -> ImageAugmentation {
        augmentation.augmentation(seed: dataSeed, epoch: epoch, index: position)
    }

    /// Writes batch `index` (0 ..< batchesPerEpoch) of `epoch` (0-based): normalised images [n, C, H, W] into the
    /// front of `images` and their labels into `labels`; returns n (1 ... maximumBatch).
    public func fill(epoch: Int, index: Int, images: UnsafeMutableBufferPointer<Float>,
                     labels: UnsafeMutableBufferPointer<Int32>) throws -> Int {
        try fill(epoch: epoch, index: index, part: 0, of: 1, images: images, labels: labels).shard
    }

    /// Writes only share `part` of `parts` (`BatchShards.range`) of batch `index` of `epoch` into the front of the
    /// buffers, decoding nothing else: one rank's images of a data-parallel step. Returns the share's image count
    /// (0 when the batch has fewer images than parts) and the whole batch's. Prefetches the same share of the next
    /// batch.
    public func fill(epoch: Int, index: Int, part: Int, of parts: Int, images: UnsafeMutableBufferPointer<Float>,
                     labels: UnsafeMutableBufferPointer<Int32>) throws -> (shard: Int, batch: Int) {
        guard epoch >= 0, index >= 0, index < batchesPerEpoch else {
            throw DataFileError(file: dataset.name, .invalidRequest(
                "batch \(index) of epoch \(epoch) does not exist (\(batchesPerEpoch) batches per epoch)"))
        }
        guard parts >= 1, (0..<parts).contains(part) else {
            throw DataFileError(file: dataset.name, .invalidRequest("share \(part) of \(parts) does not exist"))
        }
        guard images.count >= maximumBatch * imageElements, labels.count >= maximumBatch else {
            throw DataFileError(file: dataset.name, .invalidRequest(
                "batch buffers hold \(images.count) floats and \(labels.count) labels; need \(maximumBatch * imageElements) and \(maximumBatch)"))
        }
        let key = BatchKey(epoch: epoch, index: index, part: part, parts: parts)
        let count: (shard: Int, batch: Int)
        if let staged = pending {
            staged.done.wait()
            pending = nil
            if staged.key == key, let imageBase = images.baseAddress, let stagedImageBase = stagedImages.baseAddress,
               let labelBase = labels.baseAddress, let stagedLabelBase = stagedLabels.baseAddress {
                count = stagedCount
                imageBase.update(from: stagedImageBase, count: count.shard * imageElements)
                labelBase.update(from: stagedLabelBase, count: count.shard)
            } else {
                count = prepare(key, images: images, labels: labels)
            }
        } else {
            count = prepare(key, images: images, labels: labels)
        }
        if prefetches {
            startPreparing(index + 1 < batchesPerEpoch
                           ? BatchKey(epoch: epoch, index: index + 1, part: part, parts: parts)
                           : BatchKey(epoch: epoch + 1, index: 0, part: part, parts: parts))
        }
        return count
    }

    /// Batch `index` of `epoch` as arrays (tests, small tools; the training loop uses `fill` and its own buffers).
    public func batch(epoch: Int, index: Int) throws -> (images: [Float], labels: [Int32]) {
        var images = [Float](repeating: 0, count: maximumBatch * imageElements)
        var labels = [Int32](repeating: 0, count: maximumBatch)
        let count = try images.withUnsafeMutableBufferPointer { imageBuffer in
            try labels.withUnsafeMutableBufferPointer { labelBuffer in
                try fill(epoch: epoch, index: index, images: imageBuffer, labels: labelBuffer)
            }
        }
        return (Array(images[..<(count * imageElements)]), Array(labels[..<count]))
    }

    private func startPreparing(_ key: BatchKey) {
        let done = DispatchGroup()
        pending = (key, done)
        worker.async(group: done) { [self] in
            stagedCount = prepare(key, images: stagedImages, labels: stagedLabels)
        }
    }

    /// Prepares the share `key` names of its batch into the buffers; returns the share's and the batch's image
    /// counts.
    private func prepare(_ key: BatchKey, images: UnsafeMutableBufferPointer<Float>,
                         labels: UnsafeMutableBufferPointer<Int32>) -> (shard: Int, batch: Int) {
        let order: [Int]
        if let cached = cachedOrder, cached.epoch == key.epoch {
            order = cached.order
        } else {
            order = self.order(epoch: key.epoch)
            cachedOrder = (key.epoch, order)
        }
        let start = key.index * maximumBatch
        let end = min(start + maximumBatch, order.count)
        let share = BatchShards.range(of: end - start, part: key.part, parts: key.parts)
        guard let base = images.baseAddress else { return (0, end - start) }
        for slot in 0..<share.count {
            let position = order[start + share.lowerBound + slot]
            dataset.writeImage(position, augmentation: augmentation(epoch: key.epoch, position: position),
                               into: base + slot * imageElements)
            labels[slot] = dataset.labels[position]
        }
        return (share.count, end - start)
    }
}

/// How a batch is split among the ranks of a data-parallel run: `count` items in `parts` contiguous shares, the
/// first `count % parts` shares one longer. A pure function of its arguments, so every rank agrees on every share
/// without talking.
public enum BatchShards {
    public static func range(of count: Int, part: Int, parts: Int) -> Range<Int> {
        let base = count / parts, extra = count % parts
        let start = part * base + min(part, extra)
        return start ..< start + base + (part < extra ? 1 : 0)
    }
}
