import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

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
