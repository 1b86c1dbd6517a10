import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// How one training phase of a pruning run trains: a method's own phase (ViT-Slim's search, Vulcan's constrained
/// post-training, CPD's training with gradual pruning; `--epochs`) or the recovery fine-tuning after the cut
/// (`--finetune-epochs`). Every phase uses the trainer of `vitforge train`: the same checkpoints, `--resume` and
/// progress lines. With `distill`, the unpruned model is the teacher (VBP fine-tunes with KD from the original,
/// METHODS.md §1.d; `--distill` applies to every phase of the run).
public struct TrainingPhase {
    /// Names the phase in logs and in its checkpoint file.
    public var name: String
    public var epochs: Int
    public var batchSize: Int
    /// Peak learning rate; the default is lower than from-scratch training because the weights are already good.
    public var learningRate: Double
    public var warmupFraction: Double
    public var labelSmoothing: Double
    public var distill: Bool
    public var alpha: Double
    public var temperature: Double
    public var augmentation: AugmentationRecipe
    public var seed: UInt64
    /// Where the phase's checkpoint goes (written every `checkpointEvery` steps, on Ctrl-C and at the end of the
    /// phase), and whether to continue from it when it exists.
    public var checkpointPath: String?
    /// Where a method that selects on validation keeps its best-so-far model (CPD), beside the checkpoint; the
    /// pipeline removes it with the checkpoints once the result is written.
    public var bestCheckpointPath: String? { checkpointPath.map { $0 + ".best" } }
    public var checkpointEvery: Int
    public var resume: Bool
    public var protectedInputs: [String]
    /// Whether Ctrl-C (`StopSignal`) stops the phase (`Trainer.stopsOnInterrupt`).
    public var stopsOnInterrupt = true
    /// No schedule: the learning rate stays at `learningRate` (Vulcan's post-training, METHODS.md §3.d).
    public var constantLearningRate = false
    /// Which progress reports carry the loss (`Trainer.progressLoss`; the CLI passes its printer's cadence).
    public var progressLoss = ProgressLossCadence()

    public init(name: String = "finetune", epochs: Int, batchSize: Int = 128, learningRate: Double = 1e-4,
                warmupFraction: Double = 0, labelSmoothing: Double = 0, distill: Bool = true, alpha: Double = 0.5,
                temperature: Double = DistillationSettings.defaultTemperature,
                augmentation: AugmentationRecipe = .fashionMNISTFixture, seed: UInt64 = 0,
                checkpointPath: String? = nil, checkpointEvery: Int = 200, resume: Bool = false,
                protectedInputs: [String] = []) {
        self.name = name
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.warmupFraction = warmupFraction
        self.labelSmoothing = labelSmoothing
        self.distill = distill
        self.alpha = alpha
        self.temperature = temperature
        self.augmentation = augmentation
        self.seed = seed
        self.checkpointPath = checkpointPath
        self.checkpointEvery = checkpointEvery
        self.resume = resume
        self.protectedInputs = protectedInputs
    }

    /// The phase as a training session (the one `vitforge train` runs): no schedule with `constantLearningRate`.
    public var session: TrainingSession {
        let settings = TrainingSettings(
            epochs: epochs, learningRate: learningRate, minimumLearningRate: constantLearningRate ? learningRate : 0,
            warmupFraction: constantLearningRate ? 0 : warmupFraction, labelSmoothing: labelSmoothing,
            distillation: distill ? DistillationSettings(alpha: alpha, temperature: temperature) : nil)
        var session = TrainingSession(
            settings: settings, batchSize: batchSize, seed: seed, augmentation: augmentation,
            checkpoints: CheckpointPolicy(lastPath: checkpointPath, everySteps: checkpointEvery,
                                          protectedInputs: protectedInputs),
            resume: resume ? .ifCheckpointExists : .never)
        session.stopsOnInterrupt = stopsOnInterrupt
        session.progressLoss = progressLoss
        return session
    }

    /// A trainer for `student` on `training` with these settings (the teacher is built only when distilling). A
    /// method adds its terms, hooks and optimizer slots to it, then calls `run(_:progress:)`.
    public func makeTrainer(student: ViTWeights, teacher: ViTWeights, training: Dataset,
                            backend: Backend) throws -> Trainer {
        let model = try VisionTransformer(weights: student, backend: backend)
        let teacherModel = distill ? try VisionTransformer(weights: teacher, backend: backend) : nil
        return try session.makeTrainer(model: model, teacher: teacherModel, training: training)
    }

    /// Trains `trainer` to the end of the phase, first continuing from the checkpoint when `resume` is set and the
    /// file exists (a finished phase's checkpoint resumes to its end at once). Returns true when Ctrl-C (or
    /// `stopWhen`, asked after every step) stopped it; the checkpoint then holds the position.
    public func run(_ trainer: Trainer, progress: ((TrainingProgress) -> Void)? = nil,
                    stopWhen: ((TrainingProgress) -> Bool)? = nil) throws -> Bool {
        try session.run(trainer, progress: progress, stopWhen: stopWhen).stopped
    }

    /// Plain training of `student` (no terms or hooks): the fine-tuning after the cut. Returns the trained weights
    /// and whether the run was interrupted (then the checkpoint holds the position), and its epochs for the report.
    public func run(student: ViTWeights, teacher: ViTWeights, training: Dataset, backend: Backend,
                    progress: ((TrainingProgress) -> Void)? = nil,
                    stopWhen: ((TrainingProgress) -> Bool)? = nil)
        throws -> (weights: ViTWeights, stopped: Bool, history: TrainingHistory) {
        let trainer = try makeTrainer(student: student, teacher: teacher, training: training, backend: backend)
        let stopped = try run(trainer, progress: progress, stopWhen: stopWhen)
        return (try session.result(of: trainer), stopped, trainer.state.history)
    }
}
