import Foundation
import ViTForgeData
import ViTForgeFormats
import ViTForgeModel

/// One training run wired end to end, the same for `vitforge train`, `vitforge demo` and every training phase of a
/// pruning run: the batches (data, batch size, seed, augmentation, loader threads), the trainer (model, teacher when
/// distilling, settings, checkpoints), continuing from the checkpoint, progress reports and stop requests, the
/// per-epoch evaluation, and the trained weights at the end, written to the run's output file when it has one.
/// Callers differ only in what they print and where the result goes.
public struct TrainingSession {
    /// Whether the run continues from `checkpoints.lastPath`.
    public enum Resume: Sendable {
        case never
        /// When the checkpoint exists (a pruning phase, the demo, a run moved to the CPU after a device failure).
        case ifCheckpointExists
        /// Always (`train --resume`): a missing checkpoint is the trainer's one-line error naming it.
        case always
    }

    /// Where a completed run's model is written (`train --out`, the demo's first step).
    public struct Output {
        public var path: String
        /// Told the trained weights before they are written: what the model now knows (e.g. which data-set class
        /// each output of a head trained on renumbered labels is).
        public var describe: ((inout ViTWeights) throws -> Void)?
        /// Whether the last checkpoint is deleted once the model is written (the demo: its `--resume` then starts
        /// from the model; `train` keeps it).
        public var removesCheckpoint: Bool

        public init(path: String, removesCheckpoint: Bool = false,
                    describe: ((inout ViTWeights) throws -> Void)? = nil) {
            self.path = path
            self.removesCheckpoint = removesCheckpoint
            self.describe = describe
        }
    }

    /// The data sets evaluated after every epoch, and the batch size of that inference.
    public struct EpochEvaluation {
        public var validation: Dataset?
        public var test: Dataset?
        public var batchSize: Int
        /// Told each epoch's accuracies (1-based epoch, validation, test) — the caller's epoch line.
        public var report: (Int, Double?, Double?) -> Void

        public init(validation: Dataset?, test: Dataset?, batchSize: Int = 256,
                    report: @escaping (Int, Double?, Double?) -> Void = { _, _, _ in }) {
            self.validation = validation
            self.test = test
            self.batchSize = batchSize
            self.report = report
        }
    }

    public var settings: TrainingSettings
    public var batchSize: Int
    public var seed: UInt64
    public var augmentation: AugmentationRecipe
    /// Decoding threads of the batch loader.
    public var loaderWorkers = BatchLoader.defaultWorkers
    public var checkpoints: CheckpointPolicy
    public var resume: Resume
    /// Whether Ctrl-C (`StopSignal`) stops the run (`Trainer.stopsOnInterrupt`).
    public var stopsOnInterrupt = true
    /// Which progress reports carry the loss (the CLI passes its printer's cadence).
    public var progressLoss = ProgressLossCadence()
    /// Evaluated after every epoch; the validation accuracy picks the best checkpoint (nil: no evaluation).
    public var evaluation: EpochEvaluation?
    /// Where `result(of:)` writes the trained model; nil: it stays in memory (a pruning phase hands it on).
    public var output: Output?

    public init(settings: TrainingSettings, batchSize: Int, seed: UInt64, augmentation: AugmentationRecipe,
                checkpoints: CheckpointPolicy = CheckpointPolicy(), resume: Resume = .never) {
        self.settings = settings
        self.batchSize = batchSize
        self.seed = seed
        self.augmentation = augmentation
        self.checkpoints = checkpoints
        self.resume = resume
    }

    /// A trainer for `model` on `training`, distilling from `teacher` when given. A method adds its terms, hooks and
    /// optimizer slots to it before `run`.
    public func makeTrainer(model: VisionTransformer, teacher: VisionTransformer? = nil,
                            training: Dataset) throws -> Trainer {
        let loader = try BatchLoader(dataset: training, batchSize: batchSize, seed: seed, augmentation: augmentation,
                                     workers: loaderWorkers)
        let trainer = try Trainer(model: model, batches: loader, settings: settings, teacher: teacher, seed: seed,
                                  checkpoints: checkpoints)
        trainer.stopsOnInterrupt = stopsOnInterrupt
        trainer.progressLoss = progressLoss
        if let evaluation { trainer.evaluate = Self.evaluate(evaluation) }
        return trainer
    }

    /// Trains `trainer` to the end: first continues from the checkpoint as `resume` says (then `resumed` is told),
    /// reports every step to `progress`, and stops (checkpoint written) when `stopWhen` says so or on Ctrl-C.
    public func run(_ trainer: Trainer, progress: ((TrainingProgress) -> Void)? = nil,
                    stopWhen: ((TrainingProgress) -> Bool)? = nil,
                    resumed: ((Trainer) -> Void)? = nil) throws -> TrainingOutcome {
        if let path = checkpoints.lastPath, resume == .always
            || (resume == .ifCheckpointExists && FileManager.default.fileExists(atPath: path)) {
            try trainer.resume(from: path)
            resumed?(trainer)
        }
        trainer.onProgress = { [unowned trainer] step in
            progress?(step)
            if stopWhen?(step) == true { trainer.requestStop() }
        }
        return try trainer.run()
    }

    /// The trained weights of a completed run (`run` did not stop), written to `output` when there is one: by the
    /// main rank only in a data-parallel run (every rank ends with the same weights), which then deletes the last
    /// checkpoint when `output.removesCheckpoint`.
    public func result(of trainer: Trainer) throws -> ViTWeights {
        var weights = try trainer.model.hostWeights()
        guard let output else { return weights }
        try output.describe?(&weights)
        if trainer.collective.isMain {
            try weights.save(to: output.path)
            if output.removesCheckpoint, let path = checkpoints.lastPath {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
        return weights
    }

    /// The per-epoch evaluation as the trainer asks for it: validation accuracy is the metric (best checkpoint).
    static func evaluate(_ evaluation: EpochEvaluation) -> (VisionTransformer, Int) throws -> Evaluation {
        { model, epoch in
            let test = try evaluation.test.map { try Evaluator.tally(model, on: $0, batchSize: evaluation.batchSize) }
            let validation = try evaluation.validation.map {
                try Evaluator.tally(model, on: $0, batchSize: evaluation.batchSize)
            }
            evaluation.report(epoch, validation?.accuracy, test?.accuracy)
            return Evaluation(metric: validation?.accuracy, accuracy: validation?.accuracy,
                              testAccuracy: test?.accuracy)
        }
    }
}
