import ViTForgeDevice
import ViTForgeFormats
import ViTForgeSupport

/// A multiplier per channel that the forward applies (ViT-Slim's learned soft masks, CPD's 0/1 masks), and where
/// the backward adds each entry's gradient. Both buffers belong to the caller — usually an optimizer slot's value
/// and gradient — who may change the values between steps and zeroes the gradient (the backward accumulates).
public struct ChannelMask {
    /// [count] multipliers.
    public let values: Buffer
    /// [count], `+= d loss / d values` on every backward; nil when nothing learns the mask (0/1 masks).
    public let gradient: Buffer?

    public init(values: Buffer, gradient: Buffer? = nil) {
        self.values = values
        self.gradient = gradient
    }
}

/// The masks of one block. Every channel space of attention is a set of columns of the fused qkv output
/// (`QKVLayout`): a head is its q, k and v columns, a q/k dim its q and k columns, a v dim its v column; ViT-Slim's
/// mask of dim d of head h is one value on that dim's q, k and v columns. So one multiplier per qkv column expresses
/// every attention mask, and a method maps its own mask onto the columns (`qkvColumnIndices`, `Backend.gather`) and
/// the column gradients back (`Backend.scatterAdd`).
public struct BlockMasks {
    /// [heads·(2·qkDim + vDim)]: multiplies the qkv projection's output columns (before attention).
    public var qkv: ChannelMask?
    /// [mlpHidden]: multiplies the MLP's hidden activations after GELU (before fc2).
    public var mlpHidden: ChannelMask?

    public init(qkv: ChannelMask? = nil, mlpHidden: ChannelMask? = nil) {
        self.qkv = qkv
        self.mlpHidden = mlpHidden
    }

    public var isEmpty: Bool { qkv == nil && mlpHidden == nil }
}

/// How one learned value of an attention mask spreads over a block's qkv columns.
public enum AttentionMaskGranularity: String, CaseIterable, Sendable {
    /// One value per (head, dim), shared by that dim's q, k and v (ViT-Slim; needs qkDim == vDim).
    case dim
    /// One value per head, on all its q, k and v columns.
    case head
    /// One value per dim index, shared by every head (ViT-Slim's `--uniform_search`; needs equal heads, qkDim == vDim).
    case sharedDim = "uniform"
}

extension QKVLayout {
    /// The number of learned values of an attention mask of `granularity`.
    public func maskCount(_ granularity: AttentionMaskGranularity) -> Int {
        switch granularity {
        case .dim: return totalQK
        case .head: return heads
        case .sharedDim: return qkDims.max() ?? 0
        }
    }

    /// For every qkv column, the index of the mask value it takes (a `gather` from the values to the columns; its
    /// adjoint, a `scatterAdd` of column gradients, gives the values' gradient). Nil when the granularity needs
    /// each head's q/k and v widths equal and the block's are not (or, for `sharedDim`, all heads equal).
    public func qkvColumnIndices(_ granularity: AttentionMaskGranularity) -> [Int]? {
        if granularity != .head && qkDims != vDims { return nil }
        if granularity == .sharedDim && Set(qkDims).count > 1 { return nil }
        var indices = [Int](repeating: 0, count: qkvFeatures)
        for h in 0 ..< heads {
            for d in 0 ..< qkDims[h] {
                let value = granularity == .dim ? qkOffsets[h] + d : granularity == .head ? h : d
                indices[qRow(head: h, dim: d)] = value
                indices[kRow(head: h, dim: d)] = value
            }
            for d in 0 ..< vDims[h] {
                indices[vRow(head: h, dim: d)] = granularity == .dim ? vOffsets[h] + d : granularity == .head ? h : d
            }
        }
        return indices
    }

    /// 0/1 (or soft) multipliers per qkv column from masks on the attention spaces: a head's q, k and v columns
    /// take `heads[h]`, times `qkDims[qkOffsets[h] + d]` on its q and k columns of dim d, times
    /// `vDims[vOffsets[h] + d]` on its v columns (nil: all 1). A head with 0 contributes nothing (its values are
    /// zero).
    public func qkvColumnMultipliers(heads headValues: [Float]? = nil, qkDims qkValues: [Float]? = nil,
                                     vDims vValues: [Float]? = nil) -> [Float] {
        var columns = [Float](repeating: 1, count: qkvFeatures)
        for h in 0 ..< heads {
            let head = headValues?[h] ?? 1
            for d in 0 ..< qkDims[h] {
                let value = head * (qkValues?[qkOffsets[h] + d] ?? 1)
                columns[qRow(head: h, dim: d)] = value
                columns[kRow(head: h, dim: d)] = value
            }
            for d in 0 ..< vDims[h] { columns[vRow(head: h, dim: d)] = head * (vValues?[vOffsets[h] + d] ?? 1) }
        }
        return columns
    }
}

/// The model's masks folded into the weights they multiply, so that the masked forward and backward cost no extra
/// pass over activations: a qkv column mask m scales the rows of `attn.qkv.weight` and its bias
/// (`qkv = x·(diag(m)·W)ᵀ + m∘b`), an MLP mask scales the columns of `mlp.fc2.weight` (`fc2(m∘h) = (W2·diag(m))·h
/// + b2`). The gradients follow from the folded weights' gradients G, which the layers' backward computes anyway:
/// `dW = m∘G` and `dm = Σ_j W∘G` (rows for qkv, plus `b∘db`; columns for fc2) — the same `Σ_r x·dY` over the
/// masked tensor, with the sum over tokens already done by the weight-gradient GEMM. Measured on fm-vit-c: the
/// activation-side masks (copy, scale, reduce over 6,400 rows per block) made the training step 1.16× slower.
final class FoldedMasks {
    struct Block {
        let qkvWeight: Buffer?  // [qkvRows, width], diag(m)·W; nil without a qkv mask
        let qkvBias: Buffer?    // [qkvRows], m∘b; nil without a qkv mask or bias
        let fc2Weight: Buffer?  // [width, hidden], W2·diag(m); nil without an MLP mask
    }

    let blocks: [Block]
    /// Gradient scratch of the folded weights, shared by all blocks (sized for the largest).
    let qkvWeightGradient: Buffer  // [max qkvRows · width]
    let qkvBiasGradient: Buffer    // [max qkvRows]
    let fc2WeightGradient: Buffer  // [max width · hidden]

    init(_ backend: Backend, config: ViTConfig, masks: [BlockMasks]) throws {
        let width = config.residualWidth
        blocks = try zip(masks, config.blocks).map { mask, block in
            Block(qkvWeight: mask.qkv == nil ? nil : try backend.allocate(block.qkvRows * width),
                  qkvBias: mask.qkv == nil || !config.qkvBias ? nil : try backend.allocate(block.qkvRows),
                  fc2Weight: mask.mlpHidden == nil ? nil : try backend.allocate(width * block.mlpHidden))
        }
        let maxRows = config.blocks.map(\.qkvRows).max() ?? 0
        qkvWeightGradient = try backend.allocate(maxRows * width)
        qkvBiasGradient = try backend.allocate(maxRows)
        fc2WeightGradient = try backend.allocate(width * (config.blocks.map(\.mlpHidden).max() ?? 0))
    }
}
