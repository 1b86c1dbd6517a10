import ViTForgeData
import ViTForgeDevice
import ViTForgeModel

/// The data layer's loader already fills batches as a pure function of (seed, epoch, index), prefetching the next
/// one on a background queue: exactly what the trainer asks of a batch source.
extension BatchLoader: TrainingBatches {}

/// Accuracy of a model over a data set (no augmentation, in order), through the model's batched inference.
public enum Evaluator {
    public static func tally(_ model: VisionTransformer, on dataset: Dataset, batchSize: Int) throws -> ClassificationTally {
        var tally = ClassificationTally(classes: model.config.classes)
        try model.logits(count: dataset.count, batchSize: batchSize, prepare: { range, staging in
            dataset.prepare(range, into: staging)
        }, consume: { range, logits in
            tally.record(labels: range.map { dataset.label($0) }, logits: logits, logitsPerImage: model.config.classes)
        })
        return tally
    }
}
