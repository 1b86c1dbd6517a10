import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeModel

/// The hyper-parameters of a run; a checkpoint only resumes under the same settings.
public struct TrainingSettings: Codable, Equatable, Sendable {
    public var epochs: Int
    /// Peak learning rate (after warm-up).
    public var learningRate: Double
    /// The cosine's floor.
    public var minimumLearningRate: Double
    /// Share of all steps spent warming up (rounded down to whole steps).
    public var warmupFraction: Double
    public var optimizer: AdamWSettings
    public var labelSmoothing: Double
    /// Global L2 gradient-norm limit; nil does not clip.
    public var gradientClipNorm: Double?
    /// Knowledge distillation from the teacher given to the trainer; nil trains on labels only.
    public var distillation: DistillationSettings?

    /// The fixture recipe (`training` in fm-vit-c.json): AdamW lr 1e-3, wd 0.05, 5% warm-up then cosine to 0.
    public init(epochs: Int, learningRate: Double = 1e-3, minimumLearningRate: Double = 0,
                warmupFraction: Double = 0.05, optimizer: AdamWSettings = AdamWSettings(), labelSmoothing: Double = 0,
                gradientClipNorm: Double? = nil, distillation: DistillationSettings? = nil) {
        self.epochs = epochs
        self.learningRate = learningRate
        self.minimumLearningRate = minimumLearningRate
        self.warmupFraction = warmupFraction
        self.optimizer = optimizer
        self.labelSmoothing = labelSmoothing
        self.gradientClipNorm = gradientClipNorm
        self.distillation = distillation
    }

    /// Why these settings cannot train, or nil.
    public func problem() -> String? {
        if epochs < 1 { return "epochs \(epochs) must be at least 1" }
        if !(learningRate > 0) || !learningRate.isFinite { return "learning rate \(learningRate) must be positive" }
        if !(minimumLearningRate >= 0) || minimumLearningRate > learningRate {
            return "minimum learning rate \(minimumLearningRate) must lie in [0, \(learningRate)]"
        }
        if !(0...1).contains(warmupFraction) { return "warm-up fraction \(warmupFraction) must lie in [0, 1]" }
        let o = optimizer
        if !(0..<1).contains(o.beta1) || !(0..<1).contains(o.beta2) { return "AdamW betas must lie in [0, 1)" }
        if !(o.eps > 0) || !(o.weightDecay >= 0) { return "AdamW eps must be positive and weight decay ≥ 0" }
        if let clip = gradientClipNorm, !(clip > 0) { return "gradient clip norm \(clip) must be positive" }
        return nil
    }
}

/// The caller's per-epoch evaluation.
public struct Evaluation: Codable, Equatable, Sendable {
    /// Higher is better; chooses the best checkpoint. Nil when the run has no validation data: test numbers are
    /// reported, never used to choose.
    public var metric: Double?
    /// Validation accuracy.
    public var accuracy: Double?
    public var loss: Double?
    /// Test accuracy, for the log only.
    public var testAccuracy: Double?

    public init(metric: Double?, accuracy: Double? = nil, loss: Double? = nil, testAccuracy: Double? = nil) {
        self.metric = metric
        self.accuracy = accuracy
        self.loss = loss
        self.testAccuracy = testAccuracy
    }
}

/// One finished epoch, for the JSON log.
public struct EpochRecord: Codable, Equatable, Sendable {
    /// 1-based, as printed.
    public var epoch: Int
    /// Optimizer steps completed at the end of the epoch.
    public var step: Int
    /// Mean training loss over the epoch's images.
    public var trainLoss: Double
    /// Learning rate of the epoch's last step.
    public var learningRate: Double
    public var seconds: Double
    public var imagesPerSecond: Double
    public var validation: Evaluation?
    /// Mean value of each `TrainingTerm` over the epoch's images (nil without terms): a method's search curve.
    public var terms: [String: Double]?
}

public struct TrainingHistory: Codable, Equatable, Sendable {
    public var epochs: [EpochRecord] = []
    /// The epoch (1-based) whose weights the best checkpoint holds, and its metric.
    public var bestEpoch: Int?
    public var bestMetric: Double?

    public init() {}
}

/// Which checkpoints a run writes.
public struct CheckpointPolicy: Sendable {
    /// The resumable checkpoint (model + optimizer + state): every `everySteps` steps, at every epoch's end, when a
    /// stop is requested, and at the end of the run.
    public var lastPath: String?
    /// The model (plain weights file, loadable by every command) after the epoch with the best validation metric.
    public var bestPath: String?
    /// 0 writes `lastPath` only at epoch ends, on stop and at the end.
    public var everySteps: Int
    /// Files the checkpoints must never overwrite (the run's input model).
    public var protectedInputs: [String]

    public init(lastPath: String? = nil, bestPath: String? = nil, everySteps: Int = 0,
                protectedInputs: [String] = []) {
        self.lastPath = lastPath
        self.bestPath = bestPath
        self.everySteps = everySteps
        self.protectedInputs = protectedInputs
    }
}

/// How `run()` ended.
public struct TrainingOutcome: Sendable {
    public var history: TrainingHistory
    /// True when a stop request (Ctrl-C) ended the run early; the last checkpoint then holds the position.
    public var stopped: Bool
}
