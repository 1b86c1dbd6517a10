import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

/// The baselines: score every group of the spaces the budget names with a plain criterion, keep the best, cut.
/// No compensation, so the pruned model equals the full model with the removed channels zeroed.
public enum CriterionPruning {
    public enum Criterion: Equatable, Sendable {
        /// L1 or L2 norm of the group's weights.
        case magnitude(Importance.Norm)
        /// |Σ w·∂L/∂w| over the group, gradients summed over the calibration images.
        case taylor
        /// Seeded random scores: the floor every criterion must beat.
        case random(seed: UInt64)
    }

    public struct Result {
        public var weights: ViTWeights
        public var plan: KeepPlan
        public var outcome: BudgetOutcome
        /// The full weights the cut was made from (for `--compensate`).
        public var source: ViTWeights
    }

    /// Families the budget prunes: the ones with a keep fraction, else (a target alone) the MLP neurons.
    static func families(of budget: Budget) -> [SpaceFamily] {
        let named = SpaceFamily.allCases.filter { budget.keepFractions[$0] != nil }
        return named.isEmpty ? [.mlpHidden] : named
    }

    public static func run(_ weights: ViTWeights, backend: Backend, criterion: Criterion, budget: Budget,
                           scope: RankingScope = .global, images: CalibrationImages? = nil, limit: Int? = nil,
                           batchSize: Int = 64, latency: LatencyMeter? = nil) throws -> Result {
        var gradients: [String: [Float]] = [:]
        if criterion == .taylor {
            guard let images else { throw PruneError.invalidCalibration("Taylor importance needs calibration images") }
            let model = try VisionTransformer(weights: weights, backend: backend)
            gradients = try Importance.accumulatedGradients(of: model, images: images, limit: limit, batchSize: batchSize)
        }
        var families = families(of: budget)
        if budget.target != nil && !families.contains(.mlpHidden) { families.append(.mlpHidden) }
        let scored = try ScoredSpaces(config: weights.config, families: families, scope: scope,
                                      rounding: budget.rounding) { space in
            switch criterion {
            case let .magnitude(norm): return Importance.magnitude(space, weights: weights, norm: norm)
            case .taylor: return Importance.taylor(space, weights: weights, gradients: gradients)
            case let .random(seed): return Importance.random(space, seed: seed)
            }
        }
        let (plan, outcome) = try budget.solve(config: weights.config, nativeFamilies: [.mlpHidden], latency: latency,
                                               planFor: scored.plan)
        return Result(weights: try Surgery.prune(weights, plan: plan), plan: plan, outcome: outcome, source: weights)
    }
}

extension CriterionPruning {
    /// The baselines in the pipeline: the budget's families scored by `criterion`, no compensation.
    static func prune(_ context: PruningContext, criterion: Criterion) throws -> MethodOutcome {
        let result = try run(context.original, backend: context.backend, criterion: criterion, budget: context.budget,
                             scope: context.scope, images: context.calibration, limit: context.calibrationLimit,
                             batchSize: context.batchSize, latency: context.latency)
        var outcome = MethodOutcome(weights: result.weights, outcome: result.outcome)
        outcome.cut = PlannedCut(source: result.source, plan: result.plan)
        return outcome
    }
}

/// Baseline: remove the channels whose weights have the smallest L2 norm.
public struct MagnitudePruning: PruningMethod {
    public static let name = "magnitude"
    public static let summary = "baseline: remove the channels with the smallest L2 weight norm"
    public static let hasTrainingPhase = false
    public static let sharedSettings: Set<SharedSetting> = [.rankingScope, .compensation]

    public init() {}

    public func prune(_ context: PruningContext) throws -> MethodOutcome {
        try CriterionPruning.prune(context, criterion: .magnitude(.l2))
    }
}

/// Baseline: remove the channels with the smallest first-order Taylor estimate |Σ w·∂L/∂w| of the loss change.
public struct TaylorPruning: PruningMethod {
    public static let name = "taylor"
    public static let summary = "baseline: remove the channels with the smallest |Σ w·∂L/∂w| over calibration batches"
    public static let hasTrainingPhase = false
    public static let sharedSettings: Set<SharedSetting> = [.rankingScope, .calibrationImages, .compensation]

    public init() {}

    public func prune(_ context: PruningContext) throws -> MethodOutcome {
        try CriterionPruning.prune(context, criterion: .taylor)
    }
}

/// Baseline: remove seeded random channels, the floor every criterion must beat.
public struct RandomPruning: PruningMethod {
    public static let name = "random"
    public static let summary = "baseline: remove seeded random channels (the floor every criterion must beat)"
    public static let hasTrainingPhase = false
    public static let sharedSettings: Set<SharedSetting> = [.rankingScope, .compensation]

    public init() {}

    public func prune(_ context: PruningContext) throws -> MethodOutcome {
        try CriterionPruning.prune(context, criterion: .random(seed: context.seed))
    }
}
