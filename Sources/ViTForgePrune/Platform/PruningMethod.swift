import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// A pruning method: one file that reads like its paper section — score → select → (train) → surgery — calling the
/// shared pieces (channel spaces, groups, `ScoredSpaces`, `Budget.solve`, `Surgery`, `TrainingPhase` with terms and
/// hooks). `vitforge prune --method NAME` finds it in `PruningMethods.all`; the pipeline evaluates, fine-tunes
/// (`--finetune-epochs`), times and reports around it, the same for every method.
public protocol PruningMethod {
    /// `--method NAME`.
    static var name: String { get }
    /// One line for `--help` and reports.
    static var summary: String { get }
    /// Whether the method has a training phase of its own before or while it cuts (`--epochs`).
    static var hasTrainingPhase: Bool { get }
    /// The run's shared settings (`PruningContext`) the method reads; `prune` refuses the flag of any other, so a
    /// setting is never silently ignored.
    static var sharedSettings: Set<SharedSetting> { get }
    /// The budget and epochs this method cannot serve, as one line (checked before any work).
    func problem(with budget: Budget, epochs: Int) -> String?
    /// Fails early (before any data pass) when `budget` cannot be met on a model of `config`.
    func checkReach(_ budget: Budget, config: ViTConfig) throws
    /// Score, select, (train), compensate and cut. Returns the smaller model; `stopped` when Ctrl-C interrupted the
    /// method's training phase (its checkpoint then holds the position, and `--resume` continues).
    func prune(_ context: PruningContext) throws -> MethodOutcome
}

/// Settings of `PruningContext` that only some methods read.
public enum SharedSetting: String, CaseIterable, Sendable {
    /// `scope`: one ranking over all blocks or a fraction per block (`--scope`).
    case rankingScope
    /// `calibrationImages`: how many images statistics or gradients are taken over (`--calib-images`).
    case calibrationImages
    /// `--compensate`: the method makes a one-shot cut it reports (`MethodOutcome.cut`), which the pipeline may
    /// refit by least squares (`CompensationSettings`).
    case compensation
}

extension PruningMethod {
    public var name: String { Self.name }

    public static var sharedSettings: Set<SharedSetting> { [] }

    public func checkReach(_ budget: Budget, config: ViTConfig) throws {}

    public func problem(with budget: Budget, epochs: Int) -> String? {
        if epochs > 0 && !Self.hasTrainingPhase {
            return "\(Self.name) has no training phase of its own (--epochs); use --finetune-epochs to fine-tune after the cut"
        }
        return nil
    }
}

/// What a method returns to the pipeline.
public struct MethodOutcome {
    public var weights: ViTWeights
    public var outcome: BudgetOutcome
    public var stopped: Bool
    /// Per-epoch records of the method's own training phase (empty without one), for the report.
    public var history: TrainingHistory?
    /// Distributions of what the method learned or scored, by name (e.g. ViT-Slim's mask values per module type).
    public var histograms: [String: Histogram]
    /// The cuts of a method that prunes while it trains (empty otherwise).
    public var pruningSteps: [PruningStepRecord]
    /// The method's own numbers and step series for the report (`PruneReport.methodMetrics`, `methodSeries`).
    public var metrics: [String: Double]?
    public var series: [String: [Double]]?
    /// The one-shot cut (full weights and plan) for `--compensate`; nil for methods that cut otherwise.
    public var cut: PlannedCut?

    public init(weights: ViTWeights, outcome: BudgetOutcome, stopped: Bool = false, history: TrainingHistory? = nil,
                histograms: [String: Histogram] = [:], pruningSteps: [PruningStepRecord] = []) {
        self.weights = weights
        self.outcome = outcome
        self.stopped = stopped
        self.history = history
        self.histograms = histograms
        self.pruningSteps = pruningSteps
    }
}

/// Counts of values in equal-width bins between the smallest and the largest value.
public struct Histogram: Codable, Equatable, Sendable {
    /// `bins + 1` bin edges, ascending.
    public var edges: [Double]
    public var counts: [Int]

    public init(_ values: [Double], bins: Int = 20) {
        let low = values.min() ?? 0, high = values.max() ?? 0
        let width = high > low ? (high - low) / Double(bins) : 1
        edges = (0 ... bins).map { low + Double($0) * width }
        var counts = [Int](repeating: 0, count: bins)
        for value in values { counts[min(bins - 1, max(0, Int((value - low) / width)))] += 1 }
        self.counts = counts
    }
}

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

/// The registry `vitforge prune --method NAME` dispatches through. A new method adds its type here.
public enum PruningMethods {
    public static let all: [any PruningMethod.Type] = [
        VarianceBasedPruning.self, ViTSlim.self, CPD.self, Vulcan.self, MagnitudePruning.self, TaylorPruning.self,
        RandomPruning.self, OBSPruning.self,
    ]

    public static var names: [String] { all.map { $0.name } }

    public static func named(_ name: String) -> (any PruningMethod.Type)? { all.first { $0.name == name } }
}
