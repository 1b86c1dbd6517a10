import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport
import ViTForgeTrain

/// VBP's head criterion. The paper prunes MLP neurons only (METHODS.md §1.c), so alone it cannot reach budgets where
/// attention is a large share of the MACs; this carries its idea over to whole heads. A head's output is its slice of
/// the merged values (`attn.proj`'s inputs `head·vDim + d`); a head whose output barely varies over the calibration
/// tokens behaves like a constant, as a low-variance neuron does. Its score is the summed variance of its columns,
/// E‖o_h − μ_h‖² (the squared error of holding the head at its mean, the paper's rationale for σ_j²), and a removed
/// head's mean is folded into `attn.proj.bias` as a removed neuron's is into `fc2.bias` (the zeroth-order case of
/// `--compensate`, whose refit of `attn.proj` replaces it). Heads are ranked among heads only (their own keep
/// fraction, `--keep-heads`), never against neurons: the two variances are of different layers' inputs.
extension VarianceBasedPruning {
    /// Which activations a statistics pass reads in every block.
    public enum Activations: Hashable, Sendable {
        /// The MLP's post-GELU hidden neurons, [tokens, mlpHidden].
        case mlpHidden
        /// The merged heads' values, `attn.proj`'s inputs, [tokens, attentionWidth].
        case mergedValues

        func width(_ block: BlockConfig) -> Int {
            switch self {
            case .mlpHidden: return block.mlpHidden
            case .mergedValues: return block.attentionWidth
            }
        }

        func buffer(_ model: VisionTransformer, block b: Int) throws -> Buffer {
            switch self {
            case .mlpHidden: return try model.mlpHiddenActivations(block: b)
            case .mergedValues: return try model.attentionMergedValues(block: b)
            }
        }
    }

    /// Per kind, per block, per column: mean and population variance over every token the block sees (fewer in the
    /// later blocks of a token-pruned model) of the first `limit` calibration images (all when nil), all kinds from
    /// one pass, accumulated in float64 on the device (Chan's parallel update) and merged exactly across the ranks of
    /// a data-parallel run (`mergedAcrossRanks`).
    public static func statistics(of model: VisionTransformer, images: CalibrationImages, activations: [Activations],
                                  limit: Int? = nil, batchSize: Int = 64, collective: any Collective = Collectives.world)
        throws -> [Activations: NeuronStatistics] {
        let backend = model.backend
        let blocks = model.config.blocks
        let states = try activations.map { kind in
            try blocks.map { try backend.zeros(ColumnStatistics.stateCount(kind.width($0))) }
        }
        var observations = [Int](repeating: 0, count: blocks.count)
        try images.forEachBatch(limit: limit, batchSize: batchSize, collective: collective) { pixels, _, count, _ in
            try model.forward(images: backend.makeBuffer(pixels), batch: count)
            let rows = blocks.indices.map { model.lastRows(block: $0) }
            for (kind, kindStates) in zip(activations, states) {
                for (b, block) in blocks.enumerated() {
                    try backend.columnStatisticsAccumulate(x: kind.buffer(model, block: b), rows: rows[b],
                                                           cols: kind.width(block), state: kindStates[b],
                                                           countBefore: observations[b])
                }
            }
            for b in blocks.indices { observations[b] += rows[b] }
        }
        var result: [Activations: NeuronStatistics] = [:]
        for (kind, kindStates) in zip(activations, states) {
            var means: [[Double]] = [], deviations: [[Double]] = []
            for (b, block) in blocks.enumerated() {
                // The state is float64 mean[cols] then float64 M2[cols] (Backend.columnStatisticsAccumulate); read
                // as doubles so the bias fold gets the float64 mean, not finalize's float32 copy.
                let cols = kind.width(block)
                let raw = try backend.read(kindStates[b], count: ColumnStatistics.stateCount(cols))
                let doubles = raw.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
                means.append(Array(doubles[0 ..< cols]))
                deviations.append(Array(doubles[cols ..< (2 * cols)]))
            }
            var totals = observations
            if collective.size > 1 {
                (means, deviations, totals) = try mergedAcrossRanks(means: means, squaredDeviations: deviations,
                                                                    counts: observations, collective: collective)
            }
            let variances = zip(deviations, totals).map { block, total in block.map { $0 / Double(total) } }
            result[kind] = NeuronStatistics(mean: means, variance: variances, observations: totals)
        }
        return result
    }

    /// The merged-value columns of each head of `block`, in head order.
    static func headColumns(_ block: BlockConfig) -> [[Int]] {
        let layout = QKVLayout(block)
        return (0 ..< block.heads).map { h in (0 ..< layout.vDims[h]).map { layout.mergedColumn(head: h, dim: $0) } }
    }

    /// Per block, per head, from the merged values' statistics: the summed variance of the head's columns
    /// (`.variance`), or what they add to `attn.proj`'s output, Σ_d σ_d²·‖proj[:, d]‖² (`.outputVariance`,
    /// covariances ignored as for neurons).
    public static func headScores(_ weights: ViTWeights, statistics: NeuronStatistics, score: Score) throws
        -> [[Double]] {
        try weights.config.blocks.enumerated().map { b, block in
            guard b < statistics.variance.count, statistics.variance[b].count == block.attentionWidth else {
                throw PruneError.planMismatch("the merged values' statistics do not match block \(b)'s heads")
            }
            var columnScores = statistics.variance[b]
            if score == .outputVariance {
                guard let proj = weights["blocks.\(b).attn.proj.weight"], proj.shape.count == 2,
                      proj.shape[1] == block.attentionWidth else {
                    throw PruneError.planMismatch("blocks.\(b).attn.proj.weight does not match the statistics")
                }
                let width = proj.shape[0], inputs = proj.shape[1]
                for j in 0 ..< inputs {
                    var squaredNorm = 0.0
                    for row in 0 ..< width {
                        let w = Double(proj.values[row * inputs + j])
                        squaredNorm += w * w
                    }
                    columnScores[j] *= squaredNorm
                }
            }
            return headColumns(block).map { columns in columns.reduce(0) { $0 + columnScores[$1] } }
        }
    }

    /// Neuron scores and, when heads are pruned, head scores (higher = keep) as `ScoredSpaces`.
    public static func scoredSpaces(config: ViTConfig, neuronScores: [[Double]], headScores: [[Double]]?,
                                    scope: RankingScope, rounding: WidthRounding = .multiple(1)) throws -> ScoredSpaces {
        guard neuronScores.count == config.depth, headScores.map({ $0.count == config.depth }) ?? true else {
            throw PruneError.planMismatch("statistics do not match the model's depth")
        }
        let families: [SpaceFamily] = headScores == nil ? [.mlpHidden] : [.mlpHidden, .heads]
        return try ScoredSpaces(config: config, families: families, scope: scope, rounding: rounding) { space in
            switch space.kind {
            case .mlpHidden(let b): return neuronScores[b]
            case .heads(let b): return headScores?[b] ?? []
            default: throw PruneError.invalidBudget("vbp does not score \(space.kind)")
            }
        }
    }

    /// `weights` with, in every block whose merged values `plan` cuts, the removed columns' means folded into
    /// `attn.proj.bias` (`foldedBias`, float64): the pruned model then equals the full one with each removed head's
    /// output held at its mean.
    public static func foldingHeadMeans(_ weights: ViTWeights, plan: KeepPlan, statistics: NeuronStatistics) throws
        -> ViTWeights {
        var folded = weights
        for (b, block) in weights.config.blocks.enumerated() {
            let kept = Set(plan.keepIndices(along: .mergedValues(block: b), of: weights.config) ?? [])
            let removed = (0 ..< block.attentionWidth).filter { !kept.contains($0) }
            guard !removed.isEmpty, let proj = weights["blocks.\(b).attn.proj.weight"],
                  let bias = weights["blocks.\(b).attn.proj.bias"] else { continue }
            let foldedBias = foldedBias(fc2Weight: proj, fc2Bias: bias.values, removed: removed,
                                        mean: statistics.mean[b])
            try folded.setValues("blocks.\(b).attn.proj.bias", foldedBias.map { Float($0) })
        }
        return folded
    }
}
