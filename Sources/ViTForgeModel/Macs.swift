import ViTForgeFormats
/// Multiply-accumulates and parameters of one block, for one image.
///
/// With T tokens (patches + prefix; the block's kept tokens under token pruning), residual width D, and the block's H heads, q/k width `qk`, v width `v` and MLP
/// width M:
///
///     qkv              T · D · H(2·qk + v)
///     q·kᵀ             H · T · T · qk
///     attention · v    H · T · T · v
///     proj             T · H·v · D
///     fc1              T · D · M
///     fc2              T · M · D
///
/// Only products are counted: LayerNorm, softmax, GELU, bias and residual adds, and the scale are not (they are
/// O(T·D) each, under 1% of a block). This is fvcore's convention for matmuls and linear layers; fvcore also counts
/// LayerNorm, so it reports slightly more (DeiT-Tiny: 1.2537 G here, "1.3 G" in the DeiT paper). Torch-Pruning's
/// counter differs after head-dim pruning (REFERENCE.md §1.3).
public struct BlockCost: Equatable, Sendable {
    public var qkv: Int
    public var attentionScores: Int
    public var attentionValues: Int
    public var proj: Int
    public var fc1: Int
    public var fc2: Int
    public var parameters: Int

    public var attentionMacs: Int { qkv + attentionScores + attentionValues + proj }
    public var mlpMacs: Int { fc1 + fc2 }
    public var macs: Int { attentionMacs + mlpMacs }
}

/// MACs and parameters of a whole model for one image; see `BlockCost` for the convention.
///
///     patch embedding  patches · (C·P·P) · D      (the im2col GEMM)
///     head             D · classes, twice for a distilled DeiT (one pooled vector per head)
public struct ModelCost: Equatable, Sendable {
    public var patchEmbedMacs: Int
    public var blocks: [BlockCost]
    public var headMacs: Int
    /// Patch embedding, class/distillation tokens and position embedding.
    public var embeddingParameters: Int
    /// Final `norm`/`fc_norm` and the head(s).
    public var outputParameters: Int

    public var macs: Int { patchEmbedMacs + blocks.reduce(0) { $0 + $1.macs } + headMacs }
    public var parameters: Int { embeddingParameters + blocks.reduce(0) { $0 + $1.parameters } + outputParameters }

    /// A plain-text table, one row per block then totals, for `vitforge info`.
    public func table(config: ViTConfig) -> String {
        func row(_ columns: [String]) -> String {
            let widths = [8, 6, 6, 6, 8, 14, 14, 12]
            return zip(columns, widths).map { String(repeating: " ", count: max(0, $1 - $0.count)) + $0 }
                .joined(separator: " ")
        }
        var lines = [row(["block", "heads", "qk", "v", "mlp", "attn MACs", "mlp MACs", "params"])]
        lines.append(row(["embed", "", "", "", "", String(patchEmbedMacs), "", String(embeddingParameters)]))
        for (index, (block, cost)) in zip(config.blocks, blocks).enumerated() {
            lines.append(row([String(index), String(block.heads), BlockConfig.widths(block.qkDims),
                              BlockConfig.widths(block.vDims),
                              String(block.mlpHidden), String(cost.attentionMacs), String(cost.mlpMacs),
                              String(cost.parameters)]))
        }
        lines.append(row(["head", "", "", "", "", String(headMacs), "", String(outputParameters)]))
        lines.append(row(["total", "", "", "", "", String(macs), "", String(parameters)]))
        return lines.joined(separator: "\n")
    }
}

extension ViTConfig {
    /// The cost of one forward pass on one image (multiply by the batch for a batch).
    public func cost() -> ModelCost {
        let width = residualWidth
        let blockCosts = blocks.enumerated().map { index, block -> BlockCost in
            let tokens = self.tokens(inBlock: index)
            let qkvWidth = block.qkvRows
            let attentionWidth = block.attentionWidth
            let layerNorms = 2 * 2 * width
            let parameters = layerNorms
                + width * qkvWidth + (qkvBias ? qkvWidth : 0)
                + attentionWidth * width + width
                + width * block.mlpHidden + block.mlpHidden
                + block.mlpHidden * width + width
            return BlockCost(qkv: tokens * width * qkvWidth,
                             attentionScores: tokens * tokens * (block.qkvRows - block.attentionWidth) / 2,
                             attentionValues: tokens * tokens * block.attentionWidth,
                             proj: tokens * attentionWidth * width,
                             fc1: tokens * width * block.mlpHidden,
                             fc2: tokens * block.mlpHidden * width,
                             parameters: parameters)
        }
        let heads = distillationToken ? 2 : 1
        return ModelCost(
            patchEmbedMacs: patchCount * patchElements * width,
            blocks: blockCosts,
            headMacs: heads * width * classes,
            embeddingParameters: width * patchElements + width + prefixTokens * width + tokens * width,
            outputParameters: 2 * width + heads * (classes * width + classes))
    }
}
