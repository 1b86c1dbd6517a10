import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// The kinds of channel space, over all blocks: what `--keep-mlp`, `--keep-heads`, `--keep-residual` address.
public enum SpaceFamily: String, CaseIterable, Sendable {
    case residual, heads, qkDims, vDims, mlpHidden

    public func contains(_ kind: SpaceKind) -> Bool {
        switch (self, kind) {
        case (.residual, .residual), (.heads, .heads), (.qkDims, .qkDims), (.vDims, .vDims),
             (.mlpHidden, .mlpHidden): return true
        default: return false
        }
    }
}

/// How much to keep. Fractions are of the original model, kept (not removed): `--keep-mlp 0.5` keeps half the MLP
/// neurons. A target (`--target-params` / `--target-macs`, fraction of the original kept, or `--target-latency`,
/// milliseconds per batch measured on this device) is met by bisection on the method's native ratio
/// (METHODS.md §6.2), with this package's own counter (`ViTConfig.cost()`) or a `LatencyMeter`.
public struct Budget: Equatable, Sendable {
    public enum Target: Equatable, Sendable {
        case params(Double)
        case macs(Double)
        /// Median inference latency of one batch of `batch` images on the run's device, in milliseconds.
        case latency(milliseconds: Double, batch: Int)
    }

    /// The MLP fraction kept when a run gives no budget (`DefaultBudget.keepMLP`, every method's default but Vulcan's).
    public static let defaultKeepMLP = 0.5

    public var keepFractions: [SpaceFamily: Double]
    public var target: Target?
    /// How kept counts are rounded (`--round-to`): multiples of K for GEMM-friendly widths, or a latency table's
    /// fastest widths; nil: the method's own default (`PruningMethod.defaultRounding`: as asked, but Vulcan's
    /// multiples of 8).
    public var requestedRounding: WidthRounding?

    /// The rounding of a method whose default keeps counts as asked (every method but Vulcan).
    public var rounding: WidthRounding {
        get { requestedRounding ?? .multiple(1) }
        set { requestedRounding = newValue }
    }
    /// `--latency-table T` with `--target-latency`: the table the latency target is solved from (predicted shape by
    /// shape, the chosen one measured; `solveLatency`). Nil: every shape tried is measured.
    public var latencyTable: LoadedLatencyTable?

    public init(keepMLP: Double? = nil, keepHeads: Double? = nil, keepResidual: Double? = nil,
                target: Target? = nil, rounding: WidthRounding? = nil) {
        var fractions: [SpaceFamily: Double] = [:]
        fractions[.mlpHidden] = keepMLP
        fractions[.heads] = keepHeads
        fractions[.residual] = keepResidual
        keepFractions = fractions
        self.target = target
        requestedRounding = rounding
    }

    public func validate() throws {
        for (family, fraction) in keepFractions where !(fraction > 0 && fraction <= 1) {
            throw PruneError.invalidBudget("keep fraction \(fraction) for \(family.rawValue) must be in (0, 1]")
        }
        switch target {
        case .params(let r)?, .macs(let r)?:
            if !(r > 0 && r <= 1) { throw PruneError.invalidBudget("target \(r) must be in (0, 1]") }
        case let .latency(milliseconds, batch)?:
            if !(milliseconds > 0 && milliseconds.isFinite) {
                throw PruneError.invalidBudget("target latency \(milliseconds) ms must be positive")
            }
            if batch < 1 { throw PruneError.invalidBudget("latency batch \(batch) must be at least 1") }
        case nil: break
        }
        try requestedRounding?.validate()
        if let latencyTable {
            guard case let .latency(_, batch)? = target else {
                throw LatencyTableError(latencyTable.path, "solves a --target-latency only")
            }
            // The table's linear layers are timed at its batch's rows: another batch is another set of GEMMs.
            if latencyTable.table.batch != batch {
                throw LatencyTableError(latencyTable.path, "measured at batch \(latencyTable.table.batch), the "
                                        + "target is at --latency-batch \(batch); make one at that batch with "
                                        + "`vitforge bench --model M --batch \(batch) --latency-table T`")
            }
        }
    }

    /// The budget as asked for, in one line: `MACs 30%`, `latency 12 ms at batch 64`, `mlpHidden kept 50%`.
    public var asked: String {
        var parts = keepFractions.sorted { $0.key.rawValue < $1.key.rawValue }
            .map { "\($0.key.rawValue) kept \(Formatting.percent($0.value))" }
        switch target {
        case .params(let r)?: parts.append("params \(Formatting.percent(r))")
        case .macs(let r)?: parts.append("MACs \(Formatting.percent(r))")
        case let .latency(milliseconds, batch)?:
            parts.append("latency \(Formatting.fixed(milliseconds, decimals: 2)) ms at batch \(batch)")
        case nil: break
        }
        return parts.isEmpty ? "the method's default" : parts.joined(separator: ", ")
    }

    /// Resolves the budget to a keep plan. `planFor` is the method's plan for keep fractions per family (it must
    /// keep more as a fraction grows). Without a target the given fractions are used as they are; with one, the
    /// `nativeFamilies` share one fraction, found by bisection so that the pruned cost is as close to the target as
    /// the discrete widths allow, while fixed fractions of other families stay. A latency target needs `latency`,
    /// which measures a pruned configuration (`solveLatency`). `original`, when given, is what the cost is a
    /// fraction of (a method that fixed part of the cut beforehand, as ViT-Slim's token sets); otherwise `config`.
    public func solve(config: ViTConfig, nativeFamilies: [SpaceFamily], latency: LatencyMeter? = nil,
                      original: ViTConfig? = nil,
                      planFor: ([SpaceFamily: Double]) throws -> KeepPlan) throws -> (KeepPlan, BudgetOutcome) {
        try validate()
        let original = original ?? config
        guard let target else {
            let plan = try planFor(keepFractions)
            return (plan, BudgetOutcome(original: original, pruned: try plan.prunedConfig(of: config)))
        }
        if let clash = nativeFamilies.first(where: { keepFractions[$0] != nil }) {
            throw PruneError.invalidBudget("a target and a keep fraction for \(clash.rawValue) at once")
        }
        func planAt(_ ratio: Double) throws -> KeepPlan {
            var fractions = keepFractions
            for family in nativeFamilies { fractions[family] = ratio }
            return try planFor(fractions)
        }
        let originalCost = original.cost()
        let goal: Double
        switch target {
        case .params(let r), .macs(let r): goal = r
        case let .latency(milliseconds, batch):
            guard let latency else { throw PruneError.invalidBudget("a latency target needs a device to measure on") }
            return try solveLatency(milliseconds, batch: batch, config: config, original: original,
                                    nativeFamilies: nativeFamilies, meter: latency, planAt: planAt)
        }
        // 40 halvings reach 1e-12, far below one channel's share of any real model.
        let best = try Self.bisect(goal: goal, halvings: 40, planAt: planAt) { plan in
            let cost = try plan.prunedConfig(of: config).cost()
            if case .params = target { return Double(cost.parameters) / Double(originalCost.parameters) }
            return Double(cost.macs) / Double(originalCost.macs)
        }
        // A cost target the native families cannot reach even at their smallest widths is an error, not a model
        // cut to one neuron per block (e.g. 25% of the MACs by MLP pruning alone, when attention is 39% of them).
        if best.achieved - goal > 0.01 {
            let families = nativeFamilies.map(\.rawValue).joined(separator: ", ")
            throw PruneError.invalidBudget("target \(goal) is out of reach by pruning \(families) alone: the smallest "
                + "model this method cuts keeps \((best.achieved * 1000).rounded() / 10)%; prune other families too "
                + "(--keep-heads, --keep-residual) where the method can")
        }
        let outcome = BudgetOutcome(original: original, pruned: try best.plan.prunedConfig(of: config),
                                    nativeRatio: best.ratio, target: target)
        return (best.plan, outcome)
    }

    /// Bisection on the native ratio for a `value` that grows with it: the ratio 1, then `halvings` halvings of
    /// [0, 1]; the ratio whose value came nearest `goal`. `step` runs after each value (a pass's progress).
    static func bisect(goal: Double, halvings: Int, planAt: (Double) throws -> KeepPlan,
                       step: () throws -> Void = {}, value: (KeepPlan) throws -> Double)
        throws -> (ratio: Double, plan: KeepPlan, achieved: Double) {
        var low = 0.0, high = 1.0
        let plan = try planAt(1)
        var best = (ratio: 1.0, plan: plan, achieved: try value(plan))
        try step()
        for _ in 0..<halvings {
            let middle = (low + high) / 2
            let plan = try planAt(middle)
            let achieved = try value(plan)
            try step()
            if abs(achieved - goal) < abs(best.achieved - goal) { best = (middle, plan, achieved) }
            if achieved < goal { low = middle } else { high = middle }
        }
        return best
    }
}

/// What a budget achieved: the pruned widths and their cost against the original's.
public struct BudgetOutcome: Equatable, Sendable {
    public var config: ViTConfig
    /// The fraction the bisection settled on (nil when the fractions were given).
    public var nativeRatio: Double?
    public var target: Budget.Target?
    public var originalParameters: Int
    public var originalMacs: Int
    public var parameters: Int
    public var macs: Int
    /// For a latency target: the pruned shape's latency as measured while solving.
    public var measuredLatencyMilliseconds: Double?
    /// For a latency target solved by `Budget.solve`: how it was met (table prediction, measurements).
    public var latencySolve: LatencySolveRecord?

    public init(original: ViTConfig, plan: KeepPlan, nativeRatio: Double?, target: Budget.Target?) throws {
        self.init(original: original, pruned: try plan.prunedConfig(of: original), nativeRatio: nativeRatio,
                  target: target)
    }

    /// The outcome of a method that reached `pruned` another way than one plan (pruning while it trains).
    public init(original: ViTConfig, pruned: ViTConfig, nativeRatio: Double? = nil, target: Budget.Target? = nil) {
        config = pruned
        self.nativeRatio = nativeRatio
        self.target = target
        let before = original.cost(), after = config.cost()
        originalParameters = before.parameters
        originalMacs = before.macs
        parameters = after.parameters
        macs = after.macs
    }

    public var parameterFraction: Double { Double(parameters) / Double(originalParameters) }
    public var macFraction: Double { Double(macs) / Double(originalMacs) }

    /// One line per fact, for the CLI and reports.
    public var summary: String {
        var lines = [
            "params \(parameters) of \(originalParameters) (\(Formatting.percent(parameterFraction)))",
            "MACs \(macs) of \(originalMacs) (\(Formatting.percent(macFraction)))",
            "residual width \(config.residualWidth); per block heads×qk/v, MLP: "
                + config.blocks.map {
                    "\($0.heads)×\(BlockConfig.widths($0.qkDims))/\(BlockConfig.widths($0.vDims)), \($0.mlpHidden)"
                }.joined(separator: "; "),
        ]
        if let nativeRatio { lines.append("native keep ratio \(nativeRatio)") }
        if case let .latency(milliseconds, batch)? = target, let measured = measuredLatencyMilliseconds {
            lines.append("latency at batch \(batch): \(Formatting.fixed(measured, decimals: 2)) ms measured while "
                         + "solving (target \(Formatting.fixed(milliseconds, decimals: 2)) ms)"
                         + (latencySolve.map { "; " + $0.summary } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}

/// Scores for some channel spaces of a model, turned into keep plans for any fractions: what every score-based
/// method (magnitude, Taylor, random, VBP) shares between scoring and surgery.
public struct ScoredSpaces {
    public let config: ViTConfig
    public let spaces: [ChannelSpace]
    public let scores: [SpaceKind: [Double]]
    public var scope: RankingScope
    public var rounding: WidthRounding

    public init(config: ViTConfig, spaces: [ChannelSpace], scores: [SpaceKind: [Double]],
                scope: RankingScope = .global, rounding: WidthRounding = .multiple(1)) {
        self.config = config
        self.spaces = spaces
        self.scores = scores
        self.scope = scope
        self.rounding = rounding
    }

    /// Scores every space of `families` with `criterion`.
    public init(config: ViTConfig, families: [SpaceFamily], scope: RankingScope = .global,
                rounding: WidthRounding = .multiple(1), criterion: (ChannelSpace) throws -> [Double]) throws {
        let spaces = try config.channelSpaces().filter { space in families.contains { $0.contains(space.kind) } }
        var scores: [SpaceKind: [Double]] = [:]
        for space in spaces { scores[space.kind] = try criterion(space) }
        self.init(config: config, spaces: spaces, scores: scores, scope: scope, rounding: rounding)
    }

    /// Keeps the best `fractions[family]` of each family's groups (families without a fraction: everything).
    public func plan(_ fractions: [SpaceFamily: Double]) throws -> KeepPlan {
        var plan = KeepPlan(keepingAllOf: config)
        for family in SpaceFamily.allCases {
            guard let fraction = fractions[family] else { continue }
            let members = spaces.filter { family.contains($0.kind) }
            guard !members.isEmpty else {
                throw PruneError.invalidBudget("no scores for \(family.rawValue): this method does not prune it")
            }
            let kept = try Selection.keep(spaces: members, scores: members.map { scores[$0.kind] ?? [] },
                                          keepFraction: fraction, scope: scope, rounding: rounding)
            for (kind, indices) in kept { try plan.keep(indices, in: kind, of: config) }
        }
        return plan
    }
}
