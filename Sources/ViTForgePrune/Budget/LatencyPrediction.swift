import ViTForgeFormats

/// Predicts the latency of pruned shapes from a layer latency table, so that a `--target-latency` bisection looks
/// widths up instead of timing every shape it tries (`Budget.solveOnTable`; the shape chosen is always measured).
///
/// The table times a block's linear layers (qkv, proj, fc1, fc2) and attention's fused core, each alone. A model
/// also runs what the table does not cover: the patch embedding, the LayerNorms, GELU, the residual adds, the head,
/// and whatever the layers cost inside the model beyond their isolated timing (cold caches, thread wake-ups). A
/// shape's latency is therefore predicted as an affine function of its table sum,
///
///     predicted(shape) = slope · table(shape) + offset,
///
/// calibrated on the shapes measured for real during the solve. With none, slope 1 and offset 0 (the table alone).
/// With one, slope 1 and the offset that measurement shows: the uncovered remainder, measured once, at a shape near
/// the target rather than at the full model (GELU, a part of it, shrinks with the MLP). With two or more, the line
/// through the two measured nearest the target, which also absorbs a table that is off by a factor (measured under
/// other load). Scaling the full model's measured latency by table(shape) / table(original) was not taken: it
/// shrinks the uncovered parts with the layers, and they do not shrink.
///
/// Only the widths a solve varies need the table. A block's MLP (fc1 and fc2) must be in it; a block's attention
/// is predicted from it when its shapes are (equal heads, the table's heads, tokens and residual width) and must
/// otherwise be the same in every shape predicted (a fixed `--keep-heads`), where it is part of the offset.
struct LatencyPrediction {
    let table: LayerLatencyTable
    /// Shapes measured for real: their table sums and measured milliseconds.
    private(set) var points: [(table: Double, measured: Double)] = []
    /// The attention of the blocks the table does not cover, in the first shape predicted.
    private var uncoveredAttention: [UncoveredAttention]?

    /// Why a shape cannot be predicted from the table (the solve then measures instead).
    struct Unpredictable: Error, CustomStringConvertible {
        let description: String
    }

    private struct UncoveredAttention: Equatable {
        var block: Int
        var qkDims: [Int]
        var vDims: [Int]
    }

    init(table: LayerLatencyTable) {
        self.table = table
    }

    /// The sum of the table's latencies over the layers of `config` it covers.
    mutating func tableMilliseconds(_ config: ViTConfig) throws -> Double {
        let parent = table.parent
        guard config.residualWidth == parent.width, config.blocks.count == parent.blocks.count else {
            throw Unpredictable(description: "the table covers \(parent.blocks.count) blocks at residual width "
                                + "\(parent.width), this shape has \(config.blocks.count) at \(config.residualWidth)")
        }
        let rows = table.rows, d = parent.width
        func linear(_ inWidth: Int, _ outWidth: Int) -> Double? {
            table.milliseconds(LayerLatencyTable.LinearKey(rows: rows, inWidth: inWidth, outWidth: outWidth))
        }
        var total = 0.0
        var uncovered: [UncoveredAttention] = []
        for (b, block) in config.blocks.enumerated() {
            guard config.tokens(inBlock: b) == parent.tokens else {
                throw Unpredictable(description: "block \(b) runs \(config.tokens(inBlock: b)) tokens, the table "
                                    + "\(parent.tokens)")
            }
            guard let fc1 = linear(d, block.mlpHidden), let fc2 = linear(block.mlpHidden, d) else {
                throw Unpredictable(description: "MLP width \(block.mlpHidden) of block \(b) is not in the table")
            }
            total += fc1 + fc2
            let core = block.hasUniformHeads
                ? table.milliseconds(LayerLatencyTable.AttentionKey(heads: block.heads, qkDim: block.qkDim,
                                                                    vDim: block.vDim)) : nil
            if let core, let qkv = linear(d, block.qkvRows), let proj = linear(block.attentionWidth, d) {
                total += qkv + core + proj
            } else {
                uncovered.append(UncoveredAttention(block: b, qkDims: block.qkDims, vDims: block.vDims))
            }
        }
        if let reference = uncoveredAttention, reference != uncovered {
            throw Unpredictable(description: "the attention widths change between the shapes tried and the table "
                                + "does not cover them (heads of unequal widths or other head counts)")
        }
        uncoveredAttention = uncovered
        return total
    }

    /// A shape measured for real: calibrates the later predictions.
    mutating func record(table: Double, measured: Double) {
        points.append((table, measured))
    }

    /// The affine map from table sums to milliseconds, fitted near `goal` (see the type's comment).
    func line(near goal: Double) -> (slope: Double, offset: Double) {
        let nearest = points.sorted { abs($0.measured - goal) < abs($1.measured - goal) }
        guard let first = nearest.first else { return (1, 0) }
        // The second point must differ in table sum by more than the table's noise, and the slope it gives must be
        // one a table of this device could be off by; otherwise the offset alone is calibrated.
        if let second = nearest.dropFirst().first(where: {
            abs($0.table - first.table) > 0.02 * max($0.table, first.table)
        }) {
            let slope = (second.measured - first.measured) / (second.table - first.table)
            if slope >= 0.1 && slope <= 10 { return (slope, first.measured - slope * first.table) }
        }
        return (1, first.measured - first.table)
    }

    /// The predicted milliseconds of `config` near `goal`.
    mutating func milliseconds(_ config: ViTConfig, near goal: Double) throws -> Double {
        let (slope, offset) = line(near: goal)
        return slope * (try tableMilliseconds(config)) + offset
    }
}
