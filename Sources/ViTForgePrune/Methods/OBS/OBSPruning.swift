import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport

/// `--method obs`: rank MLP neurons, heads and value dims by the structured OBS cost of removing them with the
/// least-squares update of the rest (`StructuredOBS`), greedily per layer with the inverse updated after every
/// removal, from the input moments of `fc2` and `attn.proj` on the calibration images (accumulated on the device,
/// `Compensation.moments`). Costs are divided by the layer's output variance so that one global ranking compares
/// layers (`--scope global`), or each layer keeps the same fraction (`--scope block`). The cut itself is plain;
/// with `--compensate` the pipeline applies the very update the costs assumed (same moments, same ridge), so the
/// removal and the compensation agree. Residual channels and q/k dims are not scored: neither has one linear layer
/// consuming it whose refit the cost could describe (see `Compensation`).
public struct OBSPruning: FlaglessMethod {
    public static let name = "obs"
    public static let summary = "structured Optimal Brain Surgeon (ZipLM): remove the MLP neurons, heads or value "
        + "dims whose removal, with the least-squares update of the rest, costs the least output error (greedy)"
    public static let hasTrainingPhase = false
    public static let sharedSettings: Set<SharedSetting> = [.rankingScope, .calibrationImages, .compensation,
                                                            .compensationRidge]

    /// λ of the costs, relative to each layer's mean input variance, when the run gives none
    /// (`PruningContext.compensationRidge`, the pipeline's `--compensate-ridge`).
    public var ridge = LeastSquaresRefit.defaultRidge

    public init() {}

    public func problem(with budget: Budget, epochs: Int) -> String? {
        if budget.keepFractions.keys.contains(where: { $0 == .residual || $0 == .qkDims }) {
            return "obs scores MLP neurons, heads and value dims (the inputs of fc2 and attn.proj); residual "
                + "channels and q/k dims have no single linear consumer to score"
        }
        if epochs > 0 { return "obs has no training phase of its own (--epochs); use --finetune-epochs" }
        return nil
    }

    public func prune(_ context: PruningContext) throws -> MethodOutcome {
        let weights = context.original, config = weights.config
        var families = CriterionPruning.families(of: context.budget)
        if context.budget.target != nil && !families.contains(.mlpHidden) { families.append(.mlpHidden) }
        let attention = families.contains(.heads) || families.contains(.vDims)
        let layers = config.blocks.indices.flatMap { b -> [Compensation.Layer] in
            (families.contains(.mlpHidden) ? [.mlp(block: b)] : []) + (attention ? [.attention(block: b)] : [])
        }
        let moments = try Compensation.moments(of: weights, layers: layers, backend: context.backend,
                                               images: context.calibration, limit: context.calibrationLimit,
                                               batchSize: context.batchSize)
        let scored = try ScoredSpaces(config: config, families: families, scope: context.scope,
                                      rounding: context.budget.rounding) { space in
            try scores(space, weights: weights, moments: moments, ridge: context.compensationRidge ?? ridge)
        }
        let (plan, outcome) = try context.solve(nativeFamilies: [.mlpHidden], planFor: scored.plan)
        var result = MethodOutcome(weights: try Surgery.prune(weights, plan: plan), outcome: outcome)
        result.cut = PlannedCut(source: weights, plan: plan)
        return result
    }

    /// The space's groups' scores (aligned with `space.groups`) from its layer's greedy OBS order.
    func scores(_ space: ChannelSpace, weights: ViTWeights, moments: [Compensation.Layer: ActivationMoments],
                ridge: Double) throws -> [Double] {
        let config = weights.config
        let layer: Compensation.Layer
        let columns: [[Int]]
        switch space.kind {
        case .mlpHidden(let b):
            layer = .mlp(block: b)
            columns = space.groups.map { [$0.index] }
        case .heads(let b):
            let layout = QKVLayout(config.blocks[b])
            layer = .attention(block: b)
            columns = space.groups.map { group in
                (0 ..< layout.vDims[group.index]).map { layout.mergedColumn(head: group.index, dim: $0) }
            }
        case .vDims(let b):
            layer = .attention(block: b)
            columns = space.groups.map { [$0.index] }  // a v dim's group index is its merged column
        default:
            throw PruneError.invalidBudget("obs does not score \(space.kind)")
        }
        guard let layerMoments = moments[layer], let w = weights[layer.name + ".weight"], w.shape.count == 2 else {
            throw PruneError.planMismatch("obs: no moments or weights for \(layer.name)")
        }
        let weight = w.values.map(Double.init)
        let steps = try StructuredOBS.greedy(weight: weight, outputs: w.shape[0], groups: columns,
                                             moments: layerMoments, ridge: ridge)
        let variance = LeastSquaresRefit.outputVariance(weight: weight, outputs: w.shape[0], moments: layerMoments)
        return StructuredOBS.scores(steps, groups: columns.count, scale: variance)
    }
}
