import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// Variance-Based Pruning (Berisha, Mehnert, Condurache, ICCV 2025; METHODS.md §1): MLP hidden neurons whose
/// post-GELU output barely varies behave like constants. Score each neuron by the variance of its output over
/// calibration data, remove the lowest-variance neurons (one global ranking over all blocks by default), and replace
/// each removed neuron by its mean, folded into `fc2.bias`. Fine-tuning with distillation follows in the trainer.
/// `--keep-heads` extends the idea to whole heads (not the paper's; `VBPHeads.swift`).
public struct VarianceBasedPruning: PruningMethod {
    public static let name = "vbp"
    public static let summary = "Variance-Based Pruning: remove the MLP neurons (and with --keep-heads, the heads) "
        + "whose output varies least, their means folded into fc2's (attn.proj's) bias"
    public static let hasTrainingPhase = false
    public static let sharedSettings: Set<SharedSetting> = [.rankingScope, .calibrationImages, .compensation]
    public static let settingNotes: [SharedSetting: String] = [.compensation: "where it replaces the mean shift"]

    /// Scope and rounding come from the run's shared settings; the rest from `--vbp-score` and `--no-bias-fold`.
    public var options: Options

    public init(options: Options = Options()) { self.options = options }

    /// What neurons are ranked by.
    public enum Score: String, CaseIterable, Sendable {
        /// σ_j², the paper's score (METHODS.md §1.b).
        case variance
        /// σ_j² · ‖W2[:, j]‖²: the variance the neuron adds to the block's output, i.e. the error the mean-shift
        /// fold leaves there (ignoring covariances). Not the paper's; on fm-vit-c/fm-vit-b it kept 0.4–1.5 points
        /// more accuracy before fine-tuning at 50% and 30% of the neurons kept (see the session notes).
        case outputVariance = "output-variance"
    }

    public struct Options: Equatable, Sendable {
        /// Share of all MLP neurons kept (VBP's ratio p is `1 − keepFraction`).
        public var keepFraction: Double
        public var scope: RankingScope
        /// Mean-shift compensation (§1.b); off reproduces the paper's "variance without mean shift" ablation.
        public var biasFold: Bool
        public var rounding: WidthRounding
        public var score: Score

        public init(keepFraction: Double = 0.5, scope: RankingScope = .global, biasFold: Bool = true,
                    rounding: WidthRounding = .multiple(1), score: Score = .variance) {
            self.keepFraction = keepFraction
            self.scope = scope
            self.biasFold = biasFold
            self.rounding = rounding
            self.score = score
        }
    }

    /// Per block, per neuron: mean and population variance (ddof 0) of the post-GELU activation over every token the
    /// block sees of every calibration image. Ranking does not depend on ddof (every neuron of a block sees the same
    /// count).
    public struct NeuronStatistics: Equatable, Sendable {
        public var mean: [[Double]]
        public var variance: [[Double]]
        /// Per block, tokens observed per neuron: the same for every block unless the model is token-pruned
        /// (`ViTConfig.tokenSets`), whose blocks from the first shrinking set on see fewer.
        public var observations: [Int]

        public init(mean: [[Double]], variance: [[Double]], observations: [Int]) {
            self.mean = mean
            self.variance = variance
            self.observations = observations
        }
    }

    // MARK: 1. Score: activation statistics

    /// Runs the model over the first `limit` calibration images (all when nil), in order, and merges every block's
    /// post-GELU activations [batch·tokens, mlpHidden] into float64 running statistics on the device (Chan's
    /// parallel update, the batched form of Welford's algorithm in §1.b). In a data-parallel run each rank does its
    /// share of every batch and the ranks' statistics are merged exactly (`mergedAcrossRanks`).
    public static func statistics(of model: VisionTransformer, images: CalibrationImages, limit: Int? = nil,
                                  batchSize: Int = 64, collective: any Collective = Collectives.world)
        throws -> NeuronStatistics {
        let all = try statistics(of: model, images: images, activations: [.mlpHidden], limit: limit,
                                 batchSize: batchSize, collective: collective)
        guard let neurons = all[.mlpHidden] else { throw PruneError.invalidCalibration("no MLP statistics") }
        return neurons
    }

    /// Merges every rank's (count n_r, mean μ_r, sum of squared deviations M2_r) per neuron into the whole data's,
    /// exactly as Chan et al.'s pairwise update does, in float64 with two all-reduces: μ = Σ n_r·μ_r / N, then
    /// M2 = Σ (M2_r + n_r·(μ_r − μ)²). Sums of squares would lose the variance to cancellation when a neuron's mean is
    /// large against its spread (the near-constant neurons VBP looks for). `counts` has one count per block (the
    /// blocks of a token-pruned model see different numbers of tokens).
    static func mergedAcrossRanks(means: [[Double]], squaredDeviations: [[Double]], counts: [Int],
                                  collective: any Collective) throws
        -> (means: [[Double]], squaredDeviations: [[Double]], counts: [Int]) {
        let n = counts.map(Double.init)
        let first = try collective.sum(n + zip(means, n).flatMap { block, n in block.map { n * $0 } })
        let totals = Array(first[0 ..< n.count])
        guard totals.allSatisfy({ $0 > 0 }) else {
            throw PruneError.invalidCalibration("no calibration images on any rank")
        }
        var offset = n.count
        let merged = zip(means, totals).map { block, total -> [Double] in
            defer { offset += block.count }
            return (0..<block.count).map { first[offset + $0] / total }
        }
        let local = zip(zip(means, squaredDeviations), zip(merged, n)).flatMap { pair, blockMerged in
            let (mean, n) = blockMerged
            return (0..<mean.count).map { j in pair.1[j] + n * (pair.0[j] - mean[j]) * (pair.0[j] - mean[j]) }
        }
        let second = try collective.sum(local)
        offset = 0
        let deviations = merged.map { block -> [Double] in
            defer { offset += block.count }
            return Array(second[offset ..< offset + block.count])
        }
        return (merged, deviations, totals.map { Int($0) })
    }

    // MARK: 2. Select: lowest variance removed

    /// The variance scores as `ScoredSpaces` over every block's MLP, for any keep fraction or budget.
    public static func scoredSpaces(config: ViTConfig, statistics: NeuronStatistics, scope: RankingScope,
                                    rounding: WidthRounding = .multiple(1)) throws -> ScoredSpaces {
        try scoredSpaces(config: config, scores: statistics.variance, scope: scope, rounding: rounding)
    }

    /// Any per-block, per-neuron scores (higher = keep) as `ScoredSpaces` over every block's MLP.
    public static func scoredSpaces(config: ViTConfig, scores: [[Double]], scope: RankingScope,
                                    rounding: WidthRounding = .multiple(1)) throws -> ScoredSpaces {
        guard scores.count == config.depth, zip(scores, config.blocks).allSatisfy({ $0.count == $1.mlpHidden }) else {
            throw PruneError.planMismatch("statistics do not match the model's MLP widths")
        }
        return try ScoredSpaces(config: config, families: [.mlpHidden], scope: scope, rounding: rounding) { space in
            scores[space.kind.block ?? 0]
        }
    }

    /// Per block, per neuron: the score `score` ranks by.
    public static func scores(_ weights: ViTWeights, statistics: NeuronStatistics, score: Score) throws -> [[Double]] {
        switch score {
        case .variance:
            return statistics.variance
        case .outputVariance:
            return try weights.config.blocks.indices.map { b in
                guard let w2 = weights["blocks.\(b).mlp.fc2.weight"], b < statistics.variance.count,
                      w2.shape.count == 2, w2.shape[1] == statistics.variance[b].count else {
                    throw PruneError.planMismatch("blocks.\(b).mlp.fc2.weight does not match the statistics")
                }
                let width = w2.shape[0], hidden = w2.shape[1]
                return (0..<hidden).map { j in
                    var squaredNorm = 0.0
                    for row in 0..<width {
                        let w = Double(w2.values[row * hidden + j])
                        squaredNorm += w * w
                    }
                    return statistics.variance[b][j] * squaredNorm
                }
            }
        }
    }

    // MARK: 3. Compensate and cut

    /// `b2 + W2[:, removed] · mean[removed]` in float64 (§1.b): the pruned block then equals the full block with
    /// each removed neuron held at its mean. `fc2Weight` is [width, mlpHidden].
    public static func foldedBias(fc2Weight: HostTensor, fc2Bias: [Float], removed: [Int], mean: [Double]) -> [Double] {
        let width = fc2Weight.shape[0], hidden = fc2Weight.shape[1]
        return (0..<width).map { row in
            var sum = Double(fc2Bias[row])
            for j in removed { sum += Double(fc2Weight.values[row * hidden + j]) * mean[j] }
            return sum
        }
    }

    /// Folds the removed neurons' means into `fc2.bias` and, given `headStatistics`, the removed heads' means into
    /// `attn.proj.bias` (when `biasFold`), then cuts to `plan`.
    public static func prune(_ weights: ViTWeights, plan: KeepPlan, statistics: NeuronStatistics,
                             headStatistics: NeuronStatistics? = nil, biasFold: Bool) throws -> ViTWeights {
        var compensated = weights
        if biasFold, let headStatistics {
            compensated = try foldingHeadMeans(weights, plan: plan, statistics: headStatistics)
        }
        if biasFold {
            for (b, block) in weights.config.blocks.enumerated() {
                let kept = Set(plan.blocks[b].mlpHidden)
                let removed = (0..<block.mlpHidden).filter { !kept.contains($0) }
                guard !removed.isEmpty, let w2 = weights["blocks.\(b).mlp.fc2.weight"],
                      let b2 = weights["blocks.\(b).mlp.fc2.bias"] else { continue }
                let bias = foldedBias(fc2Weight: w2, fc2Bias: b2.values, removed: removed, mean: statistics.mean[b])
                try compensated.setValues("blocks.\(b).mlp.fc2.bias", bias.map { Float($0) })
            }
        }
        return try Surgery.prune(compensated, plan: plan)
    }

    public struct Result {
        public var weights: ViTWeights
        public var plan: KeepPlan
        public var outcome: BudgetOutcome
        public var statistics: NeuronStatistics
        /// The merged values' statistics, when heads were pruned (`VBPHeads.swift`).
        public var headStatistics: NeuronStatistics?
    }

    /// Fails before the statistics pass when a parameter or MAC target is out of reach by MLP pruning. Which
    /// neurons are kept does not matter for that (every neuron of a block costs the same, and every block's neuron
    /// the same MACs), so any scores decide it.
    static func checkMLPReach(_ budget: Budget, config: ViTConfig) throws {
        switch budget.target {
        case .params?, .macs?: break
        case .latency?, nil: return
        }
        // A fixed head fraction is checked at its per-block share: a global ranking of random head scores can
        // leave a block without heads, and the one it must keep there would make a reachable target look out of
        // reach (the real ranking's plan is checked again by the solve after the statistics).
        let families: [SpaceFamily] = budget.keepFractions[.heads] == nil ? [.mlpHidden] : [.mlpHidden, .heads]
        let anyScores = try ScoredSpaces(config: config, families: families, scope: .block,
                                         rounding: budget.rounding) { space in
            Importance.random(space, seed: 0)
        }
        _ = try budget.solve(config: config, nativeFamilies: [.mlpHidden], planFor: anyScores.plan)
    }

    /// The whole method without fine-tuning: statistics → ranking → (budget) → fold → surgery. A budget with a
    /// target solves for the keep fraction of MLP neurons; otherwise `options.keepFraction` (or the budget's
    /// `--keep-mlp`) is used. A budget's `--keep-heads` also ranks and folds whole heads (`VBPHeads.swift`).
    public static func run(_ weights: ViTWeights, backend: Backend, images: CalibrationImages, limit: Int? = nil,
                           batchSize: Int = 64, options: Options = Options(), budget: Budget? = nil,
                           latency: LatencyMeter? = nil) throws -> Result {
        if let budget { try checkMLPReach(budget, config: weights.config) }
        let model = try VisionTransformer(weights: weights, backend: backend)
        let pruneHeads = budget?.keepFractions[.heads] != nil
        let all = try statistics(of: model, images: images,
                                 activations: pruneHeads ? [.mlpHidden, .mergedValues] : [.mlpHidden],
                                 limit: limit, batchSize: batchSize)
        guard let statistics = all[.mlpHidden] else { throw PruneError.invalidCalibration("no MLP statistics") }
        let headStatistics = all[.mergedValues]
        let scored = try scoredSpaces(config: weights.config,
                                      neuronScores: scores(weights, statistics: statistics, score: options.score),
                                      headScores: headStatistics.map {
                                          try headScores(weights, statistics: $0, score: options.score)
                                      },
                                      scope: options.scope, rounding: budget?.rounding ?? options.rounding)
        var resolved = budget ?? Budget(keepMLP: options.keepFraction)
        if resolved.target == nil && resolved.keepFractions.isEmpty { resolved.keepFractions[.mlpHidden] = options.keepFraction }
        let (plan, outcome) = try resolved.solve(config: weights.config, nativeFamilies: [.mlpHidden], latency: latency,
                                                 planFor: scored.plan)
        let pruned = try prune(weights, plan: plan, statistics: statistics, headStatistics: headStatistics,
                               biasFold: options.biasFold)
        return Result(weights: pruned, plan: plan, outcome: outcome, statistics: statistics,
                      headStatistics: headStatistics)
    }

    // MARK: The method in the pipeline

    public func problem(with budget: Budget, epochs: Int) -> String? {
        if budget.keepFractions.keys.contains(where: { $0 != .mlpHidden && $0 != .heads }) {
            return "vbp prunes MLP neurons and whole heads only; use --keep-mlp, --keep-heads or a target"
        }
        if epochs > 0 { return "vbp has no training phase of its own (--epochs); use --finetune-epochs" }
        return nil
    }

    public func checkReach(_ budget: Budget, config: ViTConfig) throws {
        try Self.checkMLPReach(budget, config: config)
    }

    public func prune(_ context: PruningContext) throws -> MethodOutcome {
        var options = self.options
        options.scope = context.scope
        options.rounding = context.budget.rounding
        let result = try Self.run(context.original, backend: context.backend, images: context.calibration,
                                  limit: context.calibrationLimit, batchSize: context.batchSize, options: options,
                                  budget: context.budget, latency: context.latency)
        var outcome = MethodOutcome(weights: result.weights, outcome: result.outcome)
        // With --compensate the pipeline refits from the unfolded weights: the refit replaces the mean shift.
        outcome.cut = PlannedCut(source: context.original, plan: result.plan)
        return outcome
    }
}
