import Dispatch
import Foundation

/// Training batches of a data set: per epoch a seeded shuffle, cut into batches of `maximumBatch` images, each image
/// augmented from (seed, epoch, its index). Every batch is a pure function of (seed, epoch, index), so a run resumed
/// at any step gets bit-identical batches. While the caller works on batch i, `workers` threads prepare (decode,
/// resize, augment) batches i + 1 ... i + `prefetchDepth` (running on into the next epoch); a request for any other
/// batch is prepared on the spot, with the same result. Image `s` of a batch is prepared by worker `s % workers`, and
/// no image depends on another, so the worker count changes the speed, never the numbers.
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
    /// Threads preparing a batch's images, and how many batches they work ahead of the caller.
    public let workers: Int
    public let prefetchDepth: Int

    /// Threads a loader uses unless told: one per core, at most 4 (beyond that the training step needs the cores).
    public static var defaultWorkers: Int { max(1, min(4, ProcessInfo.processInfo.activeProcessorCount)) }

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

    /// One batch being prepared ahead: [maximumBatch, channels, side, side] images and [maximumBatch] labels, written
    /// only by the workers, read only after waiting for `done`.
    private final class StagedBatch: @unchecked Sendable {
        let images: UnsafeMutableBufferPointer<Float>
        let labels: UnsafeMutableBufferPointer<Int32>
        var key = BatchKey(epoch: -1, index: -1)
        var count = (shard: 0, batch: 0)
        var failure: Error?
        let done = DispatchGroup()

        init(images: Int, labels: Int) {
            self.images = .allocate(capacity: images)
            self.labels = .allocate(capacity: labels)
        }

        deinit {
            images.deallocate()
            labels.deallocate()
        }
    }

    /// Where the workers of one batch write: each its own slots of the images and labels, and its lowest failing
    /// slot with the error. Shared by the worker threads; the slots they write do not overlap.
    private struct WorkerTarget: @unchecked Sendable {
        let images: UnsafeMutablePointer<Float>
        let labels: UnsafeMutablePointer<Int32>
        let failures: UnsafeMutableBufferPointer<(slot: Int, error: Error)?>
    }

    /// Batches handed to the workers, in the order they were asked for (consecutive keys), and idle buffers.
    private var queued: [StagedBatch] = []
    private var idle: [StagedBatch] = []
    /// One serial queue per worker: each does its slots of one batch after the other, in the order queued.
    private let workerQueues: [DispatchQueue]
    /// The last epoch's order, reused by its batches; read and written on the caller's thread only.
    private var cachedOrder: (epoch: Int, order: [Int])?

    public init(dataset: Dataset, batchSize: Int, seed: UInt64, shuffle: Bool = true,
                augmentation: AugmentationRecipe = .none, dropLast: Bool = false, prefetch: Bool = true,
                workers: Int = BatchLoader.defaultWorkers, prefetchDepth: Int = 3) throws {
        guard batchSize >= 1 else { throw DataFileError(file: dataset.name, .invalidRequest("batch size \(batchSize) < 1")) }
        guard dataset.count >= (dropLast ? batchSize : 1) else {
            throw DataFileError(file: dataset.name, .invalidRequest(
                "\(dataset.count) images make no full batch of \(batchSize)"))
        }
        guard augmentation.maximumShift >= 0, augmentation.flipProbability >= 0, augmentation.flipProbability <= 1 else {
            throw DataFileError(file: dataset.name, .invalidRequest("augmentation \(augmentation) is out of range"))
        }
        guard workers >= 1, prefetchDepth >= 1 else {
            throw DataFileError(file: dataset.name, .invalidRequest(
                "\(workers) loader threads and \(prefetchDepth) batches ahead: each must be at least 1"))
        }
        self.dataset = dataset
        self.maximumBatch = batchSize
        self.dataSeed = seed
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.dropLast = dropLast
        self.prefetches = prefetch
        self.workers = workers
        self.prefetchDepth = prefetchDepth
        workerQueues = (0..<workers).map { DispatchQueue(label: "ViTForgeData.BatchLoader.worker\($0)", qos: .userInitiated) }
    }

    deinit {
        for staged in queued { staged.done.wait() }
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
    /// batches.
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
        if let staged = queued.first, staged.key == key {
            queued.removeFirst()
            staged.done.wait()
            defer { idle.append(staged) }
            if let failure = staged.failure { throw failure }
            count = staged.count
            if let imageBase = images.baseAddress, let stagedImageBase = staged.images.baseAddress,
               let labelBase = labels.baseAddress, let stagedLabelBase = staged.labels.baseAddress {
                imageBase.update(from: stagedImageBase, count: count.shard * imageElements)
                labelBase.update(from: stagedLabelBase, count: count.shard)
            }
        } else {
            // Out of sequence (a resume, an evaluation pass): what was queued is not what is wanted next.
            for staged in queued {
                staged.done.wait()
                idle.append(staged)
            }
            queued.removeAll()
            let staged = StagedBatch(images: 0, labels: 0)
            let done = DispatchGroup()
            count = start(key, images: images, labels: labels, into: staged, group: done)
            done.wait()
            if let failure = staged.failure { throw failure }
        }
        if prefetches { queueAhead(after: key) }
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

    /// The key after `key`: the next batch of the epoch, or the next epoch's first.
    private func index(after key: BatchKey) -> BatchKey {
        key.index + 1 < batchesPerEpoch
            ? BatchKey(epoch: key.epoch, index: key.index + 1, part: key.part, parts: key.parts)
            : BatchKey(epoch: key.epoch + 1, index: 0, part: key.part, parts: key.parts)
    }

    /// Keeps `prefetchDepth` batches after `key` queued.
    private func queueAhead(after key: BatchKey) {
        var next = queued.last.map { index(after: $0.key) } ?? index(after: key)
        while queued.count < prefetchDepth {
            let staged = idle.popLast() ?? StagedBatch(images: maximumBatch * imageElements, labels: maximumBatch)
            staged.key = next
            staged.failure = nil
            staged.count = start(next, images: staged.images, labels: staged.labels, into: staged, group: staged.done)
            queued.append(staged)
            next = index(after: next)
        }
    }

    /// Hands the share `key` names of its batch to the workers, writing into the buffers and `staged.failure`;
    /// `group` is done when they are. Returns the share's and the batch's image counts.
    private func start(_ key: BatchKey, images: UnsafeMutableBufferPointer<Float>, labels: UnsafeMutableBufferPointer<Int32>,
                       into staged: StagedBatch, group: DispatchGroup) -> (shard: Int, batch: Int) {
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
        let positions = Array(order[(start + share.lowerBound)..<(start + share.upperBound)])
        let augmentations = positions.map { augmentation(epoch: key.epoch, position: $0) }
        guard let base = images.baseAddress, let labelBase = labels.baseAddress, !positions.isEmpty else {
            return (positions.count, end - start)
        }
        let dataset = self.dataset, elements = imageElements, workers = min(self.workers, positions.count)
        let target = WorkerTarget(images: base, labels: labelBase, failures: .allocate(capacity: workers))
        target.failures.initialize(repeating: nil)
        let finished = DispatchGroup()
        for worker in 0..<workers {
            workerQueues[worker].async(group: finished) {
                for slot in stride(from: worker, to: positions.count, by: workers) {
                    do {
                        target.labels[slot] = try dataset.writeImage(positions[slot], augmentation: augmentations[slot],
                                                                     into: target.images + slot * elements)
                    } catch {
                        target.failures[worker] = (slot, error)
                        return
                    }
                }
            }
        }
        group.enter()
        // Not on a worker's queue: that one may already hold the next batch's slots, which would delay this batch.
        finished.notify(queue: .global(qos: .userInitiated)) {
            staged.failure = target.failures.compactMap { $0 }.min { $0.slot < $1.slot }?.error
            target.failures.deinitialize()
            target.failures.deallocate()
            group.leave()
        }
        return (positions.count, end - start)
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
