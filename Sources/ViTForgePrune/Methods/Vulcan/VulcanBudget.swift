import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport

/// Vulcan's budget (METHODS.md §3.b steps 1–2): from the paper's R, the share REMOVED, to a merged MLP width and
/// q·k and v·o inner dims per block. MLP: one global threshold on per-layer z-scored activation scores. Attention
/// (data-free): harmonic per-layer rates from the effective ranks of every head's augmented Q·Kᵀ and V·O products,
/// split between q·k and v·o. Widths round down to multiples of 8, at least 8 (or the full width when smaller), or
/// by the run's `--round-to` (`WidthRounding.roundedDown`: multiples of K, or a latency table's fastest widths).
public enum VulcanBudget {
    /// What the budget gives each block.
    public struct BlockWidths: Equatable, Sendable, Codable {
        public var mlpHidden: Int
        public var qkDim: Int
        public var vDim: Int

        public init(mlpHidden: Int, qkDim: Int, vDim: Int) {
            self.mlpHidden = mlpHidden
            self.qkDim = qkDim
            self.vDim = vDim
        }
    }

    /// `erank(M) = exp(−Σ pᵢ ln pᵢ)`, `pᵢ = σᵢ / Σ σ` (Roy & Vetterli); zeros contribute nothing, and a zero
    /// matrix has effective rank 0.
    public static func effectiveRank(_ singularValues: [Double]) -> Double {
        let total = singularValues.reduce(0) { $0 + abs($1) }
        guard total > 0 else { return 0 }
        var entropy = 0.0
        for sigma in singularValues where sigma != 0 {
            let p = abs(sigma) / total
            entropy -= p * log(p)
        }
        return exp(entropy)
    }

    /// The paper's rounding: multiples of 8, at least 8.
    public static let paperRounding = WidthRounding.multiple(8)

    /// `x` (a count, ⌊·⌋ taken) rounded down by `rounding` in a space of `kind` with `width` groups: with the
    /// paper's, `max(8, 8·⌊x/8⌋)`, never above `width` (a width up to 8 stays whole) and never below 1.
    public static func roundDown(_ x: Double, width: Int, kind: SpaceKind, rounding: WidthRounding = paperRounding) -> Int {
        let count = x.isFinite ? Int(min(max(0, x), Double(width)).rounded(.down)) : 0
        return rounding.roundedDown(count, size: width, kind: kind)
    }

    /// MLP widths: scores z-scored per layer (`(a − mean)/std` over its neurons), the threshold τ = the k-th
    /// smallest of all layers' normalised scores with k = ⌊R·(all neurons)⌋; layer l keeps its neurons scoring
    /// above τ (none removed when k = 0), rounded down by `rounding` (the paper's: a multiple of 8, at least 8).
    public static func mlpWidths(scores: [[Double]], ratio: Double, rounding: WidthRounding = paperRounding) -> [Int] {
        let normalised = scores.map(zScores)
        let all = normalised.flatMap { $0 }.sorted()
        let removed = min(all.count, max(0, Int((ratio * Double(all.count)).rounded(.down))))
        return normalised.enumerated().map { l, layer in
            let kept = removed == 0 ? layer.count : layer.filter { $0 > all[removed - 1] }.count
            return roundDown(Double(kept), width: layer.count, kind: .mlpHidden(block: l), rounding: rounding)
        }
    }

    /// `(a − mean)/std` over one layer (population std; a constant layer scores 0 everywhere).
    public static func zScores(_ values: [Double]) -> [Double] {
        guard !values.isEmpty else { return [] }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
        let std = variance.squareRoot()
        return values.map { std > 0 ? ($0 - mean) / std : 0 }
    }

    /// Per-layer attention dims from the layers' summed effective ranks: `r_l = R·L / (Σ_j 1/e_j) / e_l` with
    /// `e_l = e_QK + e_VO`, split `r_QK = r_l·2e_VO/e_l`, `r_VO = r_l·2e_QK/e_l`, then `⌊d(1 − r)⌋` rounded down by
    /// `rounding` (the paper's: a multiple of 8). A layer whose ranks are 0 (no heads, zero weights) keeps its dims.
    public static func attentionDims(qkRanks: [Double], voRanks: [Double], qkDims: [Int], vDims: [Int],
                                     ratio: Double, rounding: WidthRounding = paperRounding) -> [(qk: Int, v: Int)] {
        let totals = zip(qkRanks, voRanks).map { $0 + $1 }
        let harmonic = totals.reduce(0) { $0 + ($1 > 0 ? 1 / $1 : 0) }
        let layers = Double(totals.count)
        return totals.indices.map { l in
            let e = totals[l]
            guard e > 0, harmonic > 0 else { return (qkDims[l], vDims[l]) }
            let rate = ratio * layers / harmonic / e
            let qkRate = rate * 2 * voRanks[l] / e, voRate = rate * 2 * qkRanks[l] / e
            return (roundDown((Double(qkDims[l]) * (1 - qkRate)).rounded(.down), width: qkDims[l],
                              kind: .qkDims(block: l), rounding: rounding),
                    roundDown((Double(vDims[l]) * (1 - voRate)).rounded(.down), width: vDims[l],
                              kind: .vDims(block: l), rounding: rounding))
        }
    }

    /// Every head's augmented matrices in float64: `Ŵ_Q = [W_Q | b_Q]`, `Ŵ_K`, `Ŵ_V` (rows = the head's dims,
    /// D + 1 columns) and `W_O` (the head's v dims × D: the columns of proj.weight that read it, transposed).
    public struct HeadMatrices {
        public var q: Matrix64, k: Matrix64, v: Matrix64, o: Matrix64
    }

    public static func headMatrices(_ parameters: [String: [Double]], config: ViTConfig, block b: Int) -> [HeadMatrices] {
        let block = config.blocks[b], width = config.residualWidth
        let layout = QKVLayout(block)
        let qkv = parameters["blocks.\(b).attn.qkv.weight"] ?? []
        let bias = parameters["blocks.\(b).attn.qkv.bias"]
        let proj = parameters["blocks.\(b).attn.proj.weight"] ?? []
        let projColumns = block.attentionWidth
        func augmented(_ firstRow: Int, _ rows: Int) -> Matrix64 {
            var m = Matrix64(rows: rows, cols: width + 1)
            for i in 0 ..< rows {
                for j in 0 ..< width { m[i, j] = qkv[(firstRow + i) * width + j] }
                m[i, width] = bias?[firstRow + i] ?? 0
            }
            return m
        }
        return (0 ..< block.heads).map { h in
            let qk = layout.qkDims[h], v = layout.vDims[h]
            var o = Matrix64(rows: v, cols: width)
            for i in 0 ..< v {
                for j in 0 ..< width { o[i, j] = proj[j * projColumns + layout.vOffsets[h] + i] }
            }
            return HeadMatrices(q: augmented(layout.qRow(head: h, dim: 0), qk), k: augmented(layout.kRow(head: h, dim: 0), qk),
                                v: augmented(layout.vRow(head: h, dim: 0), v), o: o)
        }
    }

    /// Summed effective ranks per block of the heads' `Ŵ_Qᵀ·Ŵ_K` and `Ŵ_Vᵀ·W_O` (step 2).
    public static func effectiveRanks(_ parameters: [String: [Double]], config: ViTConfig) throws
        -> (qk: [Double], vo: [Double]) {
        var qk: [Double] = [], vo: [Double] = []
        for b in config.blocks.indices {
            var sumQK = 0.0, sumVO = 0.0
            for head in headMatrices(parameters, config: config, block: b) {
                sumQK += effectiveRank(try Matrix64.productSVD(head.q, head.k).s)
                sumVO += effectiveRank(try Matrix64.productSVD(head.v, head.o).s)
            }
            qk.append(sumQK)
            vo.append(sumVO)
        }
        return (qk, vo)
    }
}
