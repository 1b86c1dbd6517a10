import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// Everything a method may use, the same for every method: the unpruned model, the data, the device, the budget and
/// the shared settings of `vitforge prune`.
public struct PruningContext {
    public var original: ViTWeights
    public var data: DatasetSplits
    public var backend: Backend
    public var budget: Budget
    /// One ranking over all blocks, or the same fraction per block (score-based methods).
    public var scope: RankingScope
    /// Calibration images (statistics, gradients): the first N of the training split in order; nil: all.
    public var calibrationImages: Int?
    public var batchSize: Int
    public var seed: UInt64
    /// The run's class subset (`--classes`) as model classes in the order given; nil: every class. The data is
    /// already restricted to it; a method that derives a subset model (Vulcan's trimmed head) reads the order.
    public var classes: [Int]?
    /// The share of each training class held out for validation by a method that picks its result on it
    /// (`SharedSetting.validationFraction`); nil: the method's own default.
    public var validationFraction: Double?
    /// `--compensate-ridge` as given, for a method whose costs assume the refit (`SharedSetting.compensationRidge`);
    /// nil: `LeastSquaresRefit.defaultRidge`.
    public var compensationRidge: Double?
    /// The method's own training phase: `--epochs` epochs, `--distill` from the unpruned model, its own checkpoint.
    public var training: TrainingPhase
    /// Times pruned shapes for a latency target (nil without one).
    public var latency: LatencyMeter?
    public var log: (String) -> Void
    public var progress: ((TrainingProgress) -> Void)?
    /// Asked after every training step; true stops the phase as Ctrl-C would (tests, time limits).
    public var stopWhen: ((TrainingProgress) -> Bool)?

    public init(original: ViTWeights, data: DatasetSplits, backend: Backend, budget: Budget,
                scope: RankingScope = .global, calibrationImages: Int? = nil, batchSize: Int = 128, seed: UInt64 = 0,
                training: TrainingPhase, latency: LatencyMeter? = nil, log: @escaping (String) -> Void = { _ in },
                progress: ((TrainingProgress) -> Void)? = nil, stopWhen: ((TrainingProgress) -> Bool)? = nil) {
        self.original = original
        self.data = data
        self.backend = backend
        self.budget = budget
        self.scope = scope
        self.calibrationImages = calibrationImages
        self.batchSize = batchSize
        self.seed = seed
        self.training = training
        self.latency = latency
        self.log = log
        self.progress = progress
        self.stopWhen = stopWhen
    }

    /// Runs a method's own training phase on `trainer` (made by `training.makeTrainer`, with the method's terms,
    /// hooks and slots added): checkpoints, `--resume`, progress and stop requests as in `vitforge train`. Returns
    /// true when stopped early.
    public func train(_ trainer: Trainer) throws -> Bool {
        try training.run(trainer, progress: progress, stopWhen: stopWhen)
    }

    /// The training split in order, without augmentation.
    public var calibration: DatasetCalibrationImages { DatasetCalibrationImages(data.training) }

    /// `calibrationImages` capped at what the split holds.
    public var calibrationLimit: Int? { calibrationImages.map { min($0, data.training.count) } }

    /// Resolves the budget for a method whose plan follows keep fractions (see `Budget.solve`), measuring latency on
    /// this run's device when the target is a latency.
    public func solve(nativeFamilies: [SpaceFamily], config: ViTConfig? = nil,
                      planFor: ([SpaceFamily: Double]) throws -> KeepPlan) throws -> (KeepPlan, BudgetOutcome) {
        try budget.solve(config: config ?? original.config, nativeFamilies: nativeFamilies, latency: latency,
                         planFor: planFor)
    }
}
