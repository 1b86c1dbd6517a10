import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeModel

/// Where training images come from. The data layer adapts its readers to this; the trainer never sees files.
///
/// Batch `index` of `epoch` must be a pure function of (`dataSeed`, `epoch`, `index`) — shuffling and augmentation
/// included — so that a resumed run can seek straight to the batch it stopped at and see the same pixels.
public protocol TrainingBatches: AnyObject {
    /// Batches in every epoch (the last may be partial).
    var batchesPerEpoch: Int { get }
    /// The most images one batch holds.
    var maximumBatch: Int { get }
    /// Floats per image, `channels · imageSize · imageSize` of the model.
    var imageElements: Int { get }
    /// The seed of the data order and augmentation, recorded in checkpoints.
    var dataSeed: UInt64 { get }
    /// Writes batch `index` (0 ..< batchesPerEpoch) of `epoch` (0-based): normalised images [n, C, H, W] into the
    /// front of `images` and their class indices into `labels`; returns n (1 ... maximumBatch). The buffers hold
    /// `maximumBatch` images and are reused for every batch, so nothing is allocated per step.
    func fill(epoch: Int, index: Int, images: UnsafeMutableBufferPointer<Float>,
              labels: UnsafeMutableBufferPointer<Int32>) throws -> Int
    /// Writes only share `part` of `parts` (`BatchShards.range`) of that batch into the front of the buffers: one
    /// rank's images of a data-parallel step. Returns the share's image count (may be 0) and the whole batch's.
    /// The default fills the whole batch and moves the share to the front; a source that can decode only the share
    /// should.
    func fill(epoch: Int, index: Int, part: Int, of parts: Int, images: UnsafeMutableBufferPointer<Float>,
              labels: UnsafeMutableBufferPointer<Int32>) throws -> (shard: Int, batch: Int)
}

extension TrainingBatches {
    public func fill(epoch: Int, index: Int, part: Int, of parts: Int, images: UnsafeMutableBufferPointer<Float>,
                     labels: UnsafeMutableBufferPointer<Int32>) throws -> (shard: Int, batch: Int) {
        let count = try fill(epoch: epoch, index: index, images: images, labels: labels)
        let share = BatchShards.range(of: count, part: part, parts: parts)
        if share.lowerBound > 0, let imageBase = images.baseAddress, let labelBase = labels.baseAddress {
            // The share moves down within the same buffer: memmove, the regions may overlap.
            memmove(imageBase, imageBase + share.lowerBound * imageElements,
                    share.count * imageElements * MemoryLayout<Float>.stride)
            memmove(labelBase, labelBase + share.lowerBound, share.count * MemoryLayout<Int32>.stride)
        }
        return (share.count, count)
    }
}
