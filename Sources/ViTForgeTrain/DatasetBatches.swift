import ViTForgeData
import ViTForgeDevice
import ViTForgeModel

/// The data layer's loader already fills batches as a pure function of (seed, epoch, index), prefetching the next
/// one on a background queue: exactly what the trainer asks of a batch source.
extension BatchLoader: TrainingBatches {}

/// Accuracy of a model over a data set (no augmentation, in order), through the model's batched inference.
public enum Evaluator {
    /// A model whose head serves a class subset (`ViTConfig.classIds`) is scored on the data set's labels: each
    /// prediction is mapped to the class its output stands for.
    public static func tally(_ model: VisionTransformer, on dataset: Dataset, batchSize: Int) throws -> ClassificationTally {
        let pass = PassMonitor.begin("evaluation", total: dataset.count)
        let tally = try tally(model, on: dataset, batchSize: batchSize, pass: pass)
        pass.end()
        return tally
    }

    private static func tally(_ model: VisionTransformer, on dataset: Dataset, batchSize: Int,
                              pass: PassProgress) throws -> ClassificationTally {
        let config = model.config
        if let classIds = config.classIds {
            var tally = ClassificationTally(classes: max(dataset.classCount, (classIds.max() ?? 0) + 1))
            try model.logits(count: dataset.count, batchSize: batchSize, prepare: { range, staging in
                try dataset.prepare(range, into: staging)
            }, consume: { range, logits in
                for (row, position) in range.enumerated() {
                    var best = 0
                    for k in 0 ..< config.classes where logits[row * config.classes + k] > logits[row * config.classes + best] {
                        best = k
                    }
                    tally.record(label: dataset.label(position), prediction: classIds[best])
                }
                try pass.advance(range.count)
            })
            return tally
        }
        var tally = ClassificationTally(classes: model.config.classes)
        try model.logits(count: dataset.count, batchSize: batchSize, prepare: { range, staging in
            try dataset.prepare(range, into: staging)
        }, consume: { range, logits in
            tally.record(labels: range.map { dataset.label($0) }, logits: logits, logitsPerImage: model.config.classes)
            try pass.advance(range.count)
        })
        return tally
    }
}
