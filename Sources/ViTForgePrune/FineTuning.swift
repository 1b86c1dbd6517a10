import ViTForgeData
import ViTForgeDevice
import ViTForgeModel
import ViTForgeTrain

/// The brief recovery training every method ends with: the pruned model learns from the labels and, with
/// `distill`, from the unpruned model's logits (VBP fine-tunes with KD from the original, METHODS.md §1.d).
public struct FineTuning {
    public var epochs: Int
    public var batchSize: Int
    /// Peak learning rate; the default is lower than from-scratch training because the weights are already good.
    public var learningRate: Double
    public var distill: Bool
    public var alpha: Double
    public var temperature: Double
    public var augmentation: AugmentationRecipe
    public var seed: UInt64
    /// Where the fine-tuning checkpoint goes (written every `checkpointEvery` steps and on Ctrl-C), and whether to
    /// continue from it.
    public var checkpointPath: String?
    public var checkpointEvery: Int
    public var resume: Bool
    public var protectedInputs: [String]

    public init(epochs: Int, batchSize: Int = 128, learningRate: Double = 1e-4, distill: Bool = true,
                alpha: Double = 0.5, temperature: Double = 2, augmentation: AugmentationRecipe = .fashionMNISTFixture,
                seed: UInt64 = 0, checkpointPath: String? = nil, checkpointEvery: Int = 200, resume: Bool = false,
                protectedInputs: [String] = []) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
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

    /// Trains `student` on `training`; returns the fine-tuned weights and whether the run was interrupted (then a
    /// checkpoint exists at `checkpointPath` and the returned weights are the interrupted state).
    public func run(student: ViTWeights, teacher: ViTWeights, training: Dataset, backend: Backend,
                    progress: ((TrainingProgress) -> Void)? = nil) throws -> (weights: ViTWeights, stopped: Bool) {
        let model = try VisionTransformer(weights: student, backend: backend)
        let teacherModel = distill ? try VisionTransformer(weights: teacher, backend: backend) : nil
        let loader = try BatchLoader(dataset: training, batchSize: batchSize, seed: seed, augmentation: augmentation)
        let settings = TrainingSettings(
            epochs: epochs, learningRate: learningRate, warmupFraction: 0,
            distillation: distill ? DistillationSettings(alpha: alpha, temperature: temperature) : nil)
        let trainer = try Trainer(model: model, batches: loader, settings: settings, teacher: teacherModel, seed: seed,
                                  checkpoints: CheckpointPolicy(lastPath: checkpointPath, everySteps: checkpointEvery,
                                                                protectedInputs: protectedInputs))
        if resume, let checkpointPath { try trainer.resume(from: checkpointPath) }
        trainer.onProgress = progress
        let outcome = try trainer.run()
        return (try model.hostWeights(), outcome.stopped)
    }
}
