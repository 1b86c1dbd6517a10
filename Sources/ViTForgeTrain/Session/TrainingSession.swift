import Foundation
import ViTForgeData
import ViTForgeModel

/// One training run wired end to end, the same for `vitforge train`, `vitforge demo` and every training phase of a
/// pruning run: the batches (data, batch size, seed, augmentation, loader threads), the trainer (model, teacher when
/// distilling, settings, checkpoints), continuing from the checkpoint, progress reports and stop requests, the
/// per-epoch evaluation, and the trained weights at the end. Callers differ only in what they print and where the
/// result is written.
public struct TrainingSession {
    /// Whether the run continues from `checkpoints.lastPath`.
    public enum Resume: Sendable {
        case never
        /// When the checkpoint exists (a pruning phase, the demo, a run moved to the CPU after a device failure).
        case ifCheckpointExists
        /// Always (`train --resume`): a missing checkpoint is the trainer's one-line error naming it.
        case always
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
