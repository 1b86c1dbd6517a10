import ViTForgeDevice
import ViTForgeSupport

/// The sizes of one block's multi-head self-attention. A pruned block may have any number of heads, a q/k width
/// different from its v width, and heads of different widths (`layout`); the scale is stored, not derived, so
/// pruning head dims keeps the original model's `1/sqrt(head_dim)` (REFERENCE.md §1.3: re-deriving it silently
/// changes the function).
struct AttentionShape {
    var batch: Int
    var tokens: Int
    var width: Int
    /// Each head's q/k and v widths and offsets in the fused qkv output.
    var layout: QKVLayout
    var scale: Float

    var rows: Int { batch * tokens }
    var heads: Int { layout.heads }
    /// Output features of the fused qkv projection, ordered q | k | v, head-major inside each part.
    var qkvFeatures: Int { layout.qkvFeatures }
    var mergedFeatures: Int { layout.totalV }
    var probabilityCount: Int { heads * batch * tokens * tokens }
}

/// How attention's core (softmax(scale·q·kᵀ)·v for every head) runs.
public enum AttentionPath: String, Sendable, CaseIterable {
    /// One fused backend operation (`Backend.attentionForward`/`attentionBackward`): no [tokens × tokens] matrix is
    /// stored, only a log-sum-exp per query, and the backward recomputes the probabilities. The default.
    case fused
    /// Per-head strided-batched GEMMs around a softmax over every head's stored probabilities: the reference the
    /// fused path is tested against, and the baseline of `vitforge bench --attention unfused`.
    case unfused
}

/// The element counts of attention's buffers: one block's, or the largest of several blocks' (the inference layout
/// shares one set of buffers between all blocks).
struct AttentionBufferSizes {
    var qkv: Int            // rows · qkvFeatures
    var probabilities: Int  // unfused: heads · batch · tokens²; fused: heads · batch · tokens (log-sum-exps)
    var merged: Int         // rows · Σ vDims

    init(_ shapes: [AttentionShape], path: AttentionPath) {
        qkv = shapes.map { $0.rows * $0.qkvFeatures }.max() ?? 0
        probabilities = shapes.map { path == .fused ? $0.heads * $0.rows : $0.probabilityCount }.max() ?? 0
        merged = shapes.map { $0.rows * $0.mergedFeatures }.max() ?? 0
    }
}

/// What attention's backward needs from its forward.
struct AttentionCache {
    let qkv: Buffer            // [rows, qkvFeatures]
    /// Unfused: [heads, batch, tokens, tokens], softmax(scale·q·kᵀ). Fused: [heads, batch, tokens], the log-sum-exp
    /// of each query's scores.
    let probabilities: Buffer
    let merged: Buffer         // [rows, Σ vDims], heads concatenated before proj

    init(_ backend: Backend, _ sizes: AttentionBufferSizes) throws {
        qkv = try backend.allocate(sizes.qkv)
        probabilities = try backend.allocate(sizes.probabilities)
        merged = try backend.allocate(sizes.merged)
    }
}

/// Scratch for attention's backward, reusable across blocks of the same (or smaller) shape.
struct AttentionGradientScratch {
    let dQKV: Buffer           // [rows, qkvFeatures]
    let dProbabilities: Buffer // unfused: [heads, batch, tokens, tokens]; fused: unused (1 element)
    let dScores: Buffer        // as dProbabilities
    let dMerged: Buffer        // [rows, Σ vDims]

    init(_ backend: Backend, _ sizes: AttentionBufferSizes, path: AttentionPath) throws {
        dQKV = try backend.allocate(sizes.qkv)
        let scores = path == .fused ? 1 : sizes.probabilities
        dProbabilities = try backend.allocate(scores)
        dScores = try backend.allocate(scores)
        dMerged = try backend.allocate(sizes.merged)
    }
}

struct AttentionWeights {
    let qkvWeight: Buffer   // [qkvFeatures, width]
    let qkvBias: Buffer?    // [qkvFeatures]
    let projWeight: Buffer  // [width, heads·vDim]
    let projBias: Buffer    // [width]
}

enum Attention {
    /// `out = proj(merge_h softmax(scale·q_h·k_hᵀ)·v_h)` for x [rows, width] (already normalised). Without
    /// `addingProjBias`, `out` lacks proj's bias: the caller adds it in the residual add
    /// (`residualLayerNormForward`).
    static func forward(_ backend: Backend, x: Buffer, weights: AttentionWeights, shape: AttentionShape,
                        cache: AttentionCache, out: Buffer, path: AttentionPath, addingProjBias: Bool = true) throws {
        let s = shape
        if s.heads == 0 {
            // Every head pruned away: the branch is proj's bias on every token.
            try backend.fill(out, value: 0, offset: 0, count: s.rows * s.width)
            if addingProjBias { try backend.addBias(out, bias: weights.projBias, rows: s.rows, cols: s.width) }
            return
        }
        try Linear.forward(backend, x: x, weight: weights.qkvWeight, bias: weights.qkvBias, out: cache.qkv,
                           rows: s.rows, inFeatures: s.width, outFeatures: s.qkvFeatures)
        switch path {
        case .fused:
            try backend.attentionForward(qkv: cache.qkv, layout: s.layout, batch: s.batch, tokens: s.tokens,
                                         scale: s.scale, out: cache.merged, logSumExp: cache.probabilities)
        case .unfused:
            try unfusedCoreForward(backend, shape: s, cache: cache)
        }
        try Linear.forward(backend, x: cache.merged, weight: weights.projWeight,
                           bias: addingProjBias ? weights.projBias : nil, out: out,
                           rows: s.rows, inFeatures: s.mergedFeatures, outFeatures: s.width)
    }

    /// The unfused core: each head is one strided-batched GEMM over the images, reading q/k/v in place from the
    /// fused qkv rows (leading dimension qkvFeatures) at the head's own offsets and widths, so no transposed copies
    /// are made and heads of different widths cost no more than their products; one softmax over every head's
    /// stored probabilities between them.
    private static func unfusedCoreForward(_ backend: Backend, shape s: AttentionShape, cache: AttentionCache) throws {
        let n = s.tokens
        let layout = s.layout
        for head in 0..<s.heads {
            // scores_h[b] = q_h[b] · k_h[b]ᵀ   [tokens, tokens]
            var scores = GemmSpec(m: n, n: n, k: layout.qkDims[head], transB: true)
            scores.lda = s.qkvFeatures
            scores.ldb = s.qkvFeatures
            scores.offsetA = layout.qRow(head: head, dim: 0)
            scores.offsetB = layout.kRow(head: head, dim: 0)
            scores.offsetC = head * s.batch * n * n
            scores.strideA = n * s.qkvFeatures
            scores.strideB = n * s.qkvFeatures
            scores.strideC = n * n
            scores.batch = s.batch
            try backend.gemmStridedBatched(scores, a: cache.qkv, b: cache.qkv, c: cache.probabilities)
        }
        try backend.softmaxForward(x: cache.probabilities, out: cache.probabilities,
                                   rows: s.heads * s.batch * n, cols: n, scale: s.scale)
        for head in 0..<s.heads {
            // merged[b, :, head] = probs_h[b] · v_h[b]   [tokens, vDim_h]
            var weighted = GemmSpec(m: n, n: layout.vDims[head], k: n)
            weighted.ldb = s.qkvFeatures
            weighted.ldc = s.mergedFeatures
            weighted.offsetA = head * s.batch * n * n
            weighted.offsetB = layout.vRow(head: head, dim: 0)
            weighted.offsetC = layout.mergedColumn(head: head, dim: 0)
            weighted.strideA = n * n
            weighted.strideB = n * s.qkvFeatures
            weighted.strideC = n * s.mergedFeatures
            weighted.batch = s.batch
            try backend.gemmStridedBatched(weighted, a: cache.probabilities, b: cache.qkv, c: cache.merged)
        }
    }

    /// Accumulates dX (or, with `overwriteDX`, writes it) and the weight gradients from dOut [rows, width].
    ///
    /// dMerged is written by proj's backward GEMM (beta 0), not zero-filled and accumulated. dQKV is still
    /// zero-filled: its per-head dQ, dK, dV products are 50×48 blocks (fm-vit-c), where OpenBLAS's beta-0 pass costs
    /// ~0.8 µs a call (3072 calls a step), more than one fill of the whole buffer.
    static func backward(_ backend: Backend, dOut: Buffer, x: Buffer, weights: AttentionWeights,
                         gradients: AttentionWeights, shape: AttentionShape, cache: AttentionCache,
                         scratch: AttentionGradientScratch, dX: Buffer, overwriteDX: Bool = false,
                         path: AttentionPath) throws {
        let s = shape
        if s.heads == 0 {
            try backend.addBiasBackward(dOut: dOut, dBias: gradients.projBias, rows: s.rows, cols: s.width)
            if overwriteDX { try backend.fill(dX, value: 0, offset: 0, count: s.rows * s.width) }
            return
        }
        try backend.fill(scratch.dQKV, value: 0, offset: 0, count: s.rows * s.qkvFeatures)
        try Linear.backward(backend, dOut: dOut, x: cache.merged, weight: weights.projWeight,
                            dX: scratch.dMerged, dWeight: gradients.projWeight, dBias: gradients.projBias,
                            rows: s.rows, inFeatures: s.mergedFeatures, outFeatures: s.width, overwriteDX: true)
        switch path {
        case .fused:
            try backend.attentionBackward(qkv: cache.qkv, out: cache.merged, logSumExp: cache.probabilities,
                                          dOut: scratch.dMerged, dQKV: scratch.dQKV, layout: s.layout,
                                          batch: s.batch, tokens: s.tokens, scale: s.scale)
        case .unfused:
            try unfusedCoreBackward(backend, shape: s, cache: cache, scratch: scratch)
        }
        try Linear.backward(backend, dOut: scratch.dQKV, x: x, weight: weights.qkvWeight,
                            dX: dX, dWeight: gradients.qkvWeight, dBias: gradients.qkvBias,
                            rows: s.rows, inFeatures: s.width, outFeatures: s.qkvFeatures, overwriteDX: overwriteDX)
    }

    /// The unfused core's backward: per-head GEMMs around one softmax backward of every head's probabilities.
    private static func unfusedCoreBackward(_ backend: Backend, shape s: AttentionShape, cache: AttentionCache,
                                            scratch: AttentionGradientScratch) throws {
        let n = s.tokens
        let layout = s.layout
        for head in 0..<s.heads {
            let probabilityOffset = head * s.batch * n * n
            // dProbs_h = dMerged_h · v_hᵀ
            var dProbs = GemmSpec(m: n, n: n, k: layout.vDims[head], transB: true)
            dProbs.lda = s.mergedFeatures
            dProbs.ldb = s.qkvFeatures
            dProbs.offsetA = layout.mergedColumn(head: head, dim: 0)
            dProbs.offsetB = layout.vRow(head: head, dim: 0)
            dProbs.offsetC = probabilityOffset
            dProbs.strideA = n * s.mergedFeatures
            dProbs.strideB = n * s.qkvFeatures
            dProbs.strideC = n * n
            dProbs.batch = s.batch
            try backend.gemmStridedBatched(dProbs, a: scratch.dMerged, b: cache.qkv, c: scratch.dProbabilities)
            // dV_h += probs_hᵀ · dMerged_h
            var dV = GemmSpec(m: n, n: layout.vDims[head], k: n, transA: true, beta: 1)
            dV.ldb = s.mergedFeatures
            dV.ldc = s.qkvFeatures
            dV.offsetA = probabilityOffset
            dV.offsetB = layout.mergedColumn(head: head, dim: 0)
            dV.offsetC = layout.vRow(head: head, dim: 0)
            dV.strideA = n * n
            dV.strideB = n * s.mergedFeatures
            dV.strideC = n * s.qkvFeatures
            dV.batch = s.batch
            try backend.gemmStridedBatched(dV, a: cache.probabilities, b: scratch.dMerged, c: scratch.dQKV)
        }
        // dScores = softmax backward of every head at once (the scale is applied inside).
        try backend.fill(scratch.dScores, value: 0, offset: 0, count: s.probabilityCount)
        try backend.softmaxBackward(dOut: scratch.dProbabilities, out: cache.probabilities, dX: scratch.dScores,
                                    rows: s.heads * s.batch * n, cols: n, scale: s.scale)
        for head in 0..<s.heads {
            // dQ_h += dScores_h · k_h ;  dK_h += dScores_hᵀ · q_h
            var dQ = GemmSpec(m: n, n: layout.qkDims[head], k: n, beta: 1)
            dQ.ldb = s.qkvFeatures
            dQ.ldc = s.qkvFeatures
            dQ.offsetA = head * s.batch * n * n
            dQ.offsetB = layout.kRow(head: head, dim: 0)
            dQ.offsetC = layout.qRow(head: head, dim: 0)
            dQ.strideA = n * n
            dQ.strideB = n * s.qkvFeatures
            dQ.strideC = n * s.qkvFeatures
            dQ.batch = s.batch
            try backend.gemmStridedBatched(dQ, a: scratch.dScores, b: cache.qkv, c: scratch.dQKV)
            var dK = dQ
            dK.transA = true
            dK.offsetB = layout.qRow(head: head, dim: 0)
            dK.offsetC = layout.kRow(head: head, dim: 0)
            try backend.gemmStridedBatched(dK, a: scratch.dScores, b: cache.qkv, c: scratch.dQKV)
        }
    }
}
