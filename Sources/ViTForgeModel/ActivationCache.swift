import ViTForgeDevice
import ViTForgeFormats
import ViTForgeSupport

/// Every buffer one forward (+ backward) of a given batch size needs, allocated once and reused for each step of
/// that batch size (nothing is allocated inside the step loop). Shapes are written where each buffer is born.
///
/// Two layouts. Training (`keepsActivations`): every block keeps its own activations and the residual stream keeps
/// every step, because backward reads them all. Inference: all blocks share one set of activation buffers (sized for
/// the widest block) and the residual stream alternates between two buffers, so memory is that of one block,
/// whatever the depth (DeiT-Tiny at batch 64: ~2.3 GB of training cache → ~0.25 GB), and no gradient scratch exists.
final class ActivationCache {
    struct Block {
        let norm1: Buffer       // [rows, width]
        let norm1Mean: Buffer   // [rows]
        let norm1Rstd: Buffer   // [rows]
        let attention: AttentionCache
        let norm2: Buffer       // [rows, width]
        let norm2Mean: Buffer   // [rows]
        let norm2Rstd: Buffer   // [rows]
        let mlp: MLPCache
    }

    struct Head {
        let pooled: Buffer  // [batch, width]
        let normed: Buffer  // [batch, width]
        let mean: Buffer    // [batch]
        let rstd: Buffer    // [batch]
        let logits: Buffer  // [batch, classes]
    }

    /// Backward scratch, shared by all blocks (sized for the widest block). Training layout only.
    struct GradientScratch {
        let dResidual: Buffer      // [rows, width]
        /// Where a token gather's backward scatters d(previous output) while dResidual holds d(block input);
        /// the two then swap roles. [rows, width]; nil without token sets.
        let dResidualSpare: Buffer?
        let dNormedTokens: Buffer  // [rows, width]
        let dHidden: Buffer        // [rows, max mlpHidden]
        let dPreActivation: Buffer // [rows, max mlpHidden]
        let attention: AttentionGradientScratch
        let dHeadLogits: Buffer    // [batch, classes]
        let dNormed: Buffer        // [batch, width]
        let dPooled: Buffer        // [batch, width]
        let dLogits: Buffer        // [batch, classes]
    }

    let batch: Int
    let rows: Int
    let embedding: PatchEmbeddingPlan
    let pooling: PoolingPlan
    /// The token sets' gathers and each block's rows (batch · the block's tokens).
    let tokenGather: TokenGatherPlan
    /// The residual stream, [rows, width] each; block i reads step 2i and writes steps 2i+1 (after attention) and
    /// 2i+2 (after the MLP). Training keeps all 2·depth + 1 steps; inference cycles through two buffers.
    private let residualSteps: [Buffer]
    private let blockCaches: [Block]
    let heads: [Head]
    let branchOut: Buffer      // [rows, width], attention or MLP output before the residual add
    let logits: Buffer         // [batch, classes]
    let probabilities: Buffer  // [batch, classes], the loss's softmax
    let losses: Buffer         // [batch], per-image loss
    let gradients: GradientScratch?

    func residual(_ step: Int) -> Buffer { residualSteps[step % residualSteps.count] }
    func block(_ index: Int) -> Block { blockCaches[index % blockCaches.count] }

    init(_ backend: Backend, config c: ViTConfig, batch: Int, keepsActivations: Bool,
         attentionPath: AttentionPath) throws {
        self.batch = batch
        rows = batch * c.tokens
        let width = c.residualWidth
        embedding = try PatchEmbeddingPlan(backend, PatchEmbeddingShape(
            batch: batch, channels: c.inChannels, imageHeight: c.imageSize, imageWidth: c.imageSize,
            patch: c.patchSize, width: width, prefixTokens: c.prefixTokens))
        pooling = try PoolingPlan(backend, batch: batch, tokens: c.finalTokens, width: width,
                                  prefixTokens: c.prefixTokens)
        tokenGather = try TokenGatherPlan(backend, config: c, batch: batch, keepsActivations: keepsActivations)
        let steps = keepsActivations ? 2 * c.depth + 1 : 2
        residualSteps = try (0..<steps).map { _ in try backend.allocate(batch * c.tokens * width) }
        let rows = self.rows
        let shapes = c.blocks.enumerated().map { index, block in
            AttentionShape(batch: batch, tokens: c.tokens(inBlock: index), width: width, layout: QKVLayout(block),
                           scale: Float(block.attentionScale))
        }
        let widest = AttentionBufferSizes(shapes, path: attentionPath)
        let maxHidden = c.blocks.map(\.mlpHidden).max() ?? 1
        func makeBlock(_ attention: AttentionBufferSizes, hidden: Int, rows: Int) throws -> Block {
            Block(norm1: try backend.allocate(rows * width), norm1Mean: try backend.allocate(rows),
                  norm1Rstd: try backend.allocate(rows), attention: try AttentionCache(backend, attention),
                  norm2: try backend.allocate(rows * width), norm2Mean: try backend.allocate(rows),
                  norm2Rstd: try backend.allocate(rows), mlp: try MLPCache(backend, rows: rows, hidden: hidden))
        }
        if keepsActivations {
            let blockRows = tokenGather.blockRows
            blockCaches = try c.blocks.enumerated().map { index, block in
                try makeBlock(AttentionBufferSizes([shapes[index]], path: attentionPath), hidden: block.mlpHidden,
                              rows: blockRows[index])
            }
        } else {
            blockCaches = [try makeBlock(widest, hidden: maxHidden, rows: rows)]
        }
        heads = try (0..<(c.distillationToken ? 2 : 1)).map { _ in
            Head(pooled: try backend.allocate(batch * width), normed: try backend.allocate(batch * width),
                 mean: try backend.allocate(batch), rstd: try backend.allocate(batch),
                 logits: try backend.allocate(batch * c.classes))
        }
        branchOut = try backend.allocate(rows * width)
        logits = try backend.allocate(batch * c.classes)
        probabilities = try backend.allocate(batch * c.classes)
        losses = try backend.allocate(batch)
        guard keepsActivations else {
            gradients = nil
            return
        }
        gradients = GradientScratch(
            dResidual: try backend.allocate(rows * width),
            dResidualSpare: c.tokenSets == nil ? nil : try backend.allocate(rows * width),
            dNormedTokens: try backend.allocate(rows * width),
            dHidden: try backend.allocate(rows * maxHidden), dPreActivation: try backend.allocate(rows * maxHidden),
            attention: try AttentionGradientScratch(backend, widest, path: attentionPath),
            dHeadLogits: try backend.allocate(batch * c.classes), dNormed: try backend.allocate(batch * width),
            dPooled: try backend.allocate(batch * width), dLogits: try backend.allocate(batch * c.classes))
    }
}
