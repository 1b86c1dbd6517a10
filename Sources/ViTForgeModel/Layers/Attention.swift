import ViTForgeDevice

/// The sizes of one block's multi-head self-attention. A pruned block may have any number of heads and a q/k
/// width per head different from its v width; the scale is stored, not derived, so pruning head dims keeps the
/// original model's `1/sqrt(head_dim)` (REFERENCE.md §1.3: re-deriving it silently changes the function).
struct AttentionShape {
    var batch: Int
    var tokens: Int
    var width: Int
    var heads: Int
    var qkDim: Int
    var vDim: Int
    var scale: Float

    var rows: Int { batch * tokens }
    /// Output features of the fused qkv projection, ordered q (heads·qkDim) | k (heads·qkDim) | v (heads·vDim),
    /// head-major inside each part (timm's reshape to (3, heads, head_dim) when qkDim == vDim).
    var qkvFeatures: Int { heads * (2 * qkDim + vDim) }
    var mergedFeatures: Int { heads * vDim }
    var qOffset: Int { 0 }
    var kOffset: Int { heads * qkDim }
    var vOffset: Int { 2 * heads * qkDim }
    var probabilityCount: Int { heads * batch * tokens * tokens }
}

/// What attention's backward needs from its forward.
struct AttentionCache {
    let qkv: Buffer            // [rows, qkvFeatures], masked when the block has a qkv mask
    let probabilities: Buffer  // [heads, batch, tokens, tokens], softmax(scale·q·kᵀ)
    let merged: Buffer         // [rows, heads·vDim], heads concatenated before proj
    let unmaskedQKV: Buffer?   // [rows, qkvFeatures], the projection before the mask (its gradient needs it)

    init(_ backend: Backend, _ shape: AttentionShape, masked: Bool = false) throws {
        qkv = try backend.allocate(shape.rows * shape.qkvFeatures)
        unmaskedQKV = masked ? try backend.allocate(shape.rows * shape.qkvFeatures) : nil
        probabilities = try backend.allocate(shape.probabilityCount)
        merged = try backend.allocate(shape.rows * shape.mergedFeatures)
    }
}

/// Scratch for attention's backward, reusable across blocks of the same (or smaller) shape.
struct AttentionGradientScratch {
    let dQKV: Buffer           // [rows, qkvFeatures]
    let dProbabilities: Buffer // [heads, batch, tokens, tokens]
    let dScores: Buffer        // [heads, batch, tokens, tokens]
    let dMerged: Buffer        // [rows, heads·vDim]

    init(_ backend: Backend, _ shape: AttentionShape) throws {
        dQKV = try backend.allocate(shape.rows * shape.qkvFeatures)
        dProbabilities = try backend.allocate(shape.probabilityCount)
        dScores = try backend.allocate(shape.probabilityCount)
        dMerged = try backend.allocate(shape.rows * shape.mergedFeatures)
    }
}

struct AttentionWeights {
    let qkvWeight: Buffer   // [qkvFeatures, width]
    let qkvBias: Buffer?    // [qkvFeatures]
    let projWeight: Buffer  // [width, heads·vDim]
    let projBias: Buffer    // [width]
}

enum Attention {
    /// `out = proj(merge_h softmax(scale·q_h·k_hᵀ)·v_h)` for x [rows, width] (already normalised).
    /// Each head is one strided-batched GEMM over the images, reading q/k/v in place from the fused qkv rows
    /// (leading dimension qkvFeatures), so no transposed copies are made.
    /// With `mask`, every qkv column is multiplied by its mask value before attention (`BlockMasks`).
    static func forward(_ backend: Backend, x: Buffer, weights: AttentionWeights, shape: AttentionShape,
                        cache: AttentionCache, mask: ChannelMask? = nil, out: Buffer) throws {
        let s = shape
        let n = s.tokens
        if let mask {
            guard let unmasked = cache.unmaskedQKV else {
                throw BackendError.invalidArgument("attention: a qkv mask without its activation buffer")
            }
            try Linear.forward(backend, x: x, weight: weights.qkvWeight, bias: weights.qkvBias, out: unmasked,
                               rows: s.rows, inFeatures: s.width, outFeatures: s.qkvFeatures)
            try backend.scaleColumns(unmasked, mask: mask.values, out: cache.qkv, rows: s.rows, cols: s.qkvFeatures)
        } else {
            try Linear.forward(backend, x: x, weight: weights.qkvWeight, bias: weights.qkvBias, out: cache.qkv,
                               rows: s.rows, inFeatures: s.width, outFeatures: s.qkvFeatures)
        }
        for head in 0..<s.heads {
            // scores_h[b] = q_h[b] · k_h[b]ᵀ   [tokens, tokens]
            var scores = GemmSpec(m: n, n: n, k: s.qkDim, transB: true)
            scores.lda = s.qkvFeatures
            scores.ldb = s.qkvFeatures
            scores.offsetA = s.qOffset + head * s.qkDim
            scores.offsetB = s.kOffset + head * s.qkDim
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
            // merged[b, :, head] = probs_h[b] · v_h[b]   [tokens, vDim]
            var weighted = GemmSpec(m: n, n: s.vDim, k: n)
            weighted.ldb = s.qkvFeatures
            weighted.ldc = s.mergedFeatures
            weighted.offsetA = head * s.batch * n * n
            weighted.offsetB = s.vOffset + head * s.vDim
            weighted.offsetC = head * s.vDim
            weighted.strideA = n * n
            weighted.strideB = n * s.qkvFeatures
            weighted.strideC = n * s.mergedFeatures
            weighted.batch = s.batch
            try backend.gemmStridedBatched(weighted, a: cache.probabilities, b: cache.qkv, c: cache.merged)
        }
        try Linear.forward(backend, x: cache.merged, weight: weights.projWeight, bias: weights.projBias, out: out,
                           rows: s.rows, inFeatures: s.mergedFeatures, outFeatures: s.width)
    }

    /// Accumulates dX (or, with `overwriteDX`, writes it) and the weight gradients from dOut [rows, width].
    ///
    /// dMerged is written by proj's backward GEMM (beta 0), not zero-filled and accumulated. dQKV is still
    /// zero-filled: its per-head dQ, dK, dV products are 50×48 blocks (fm-vit-c), where OpenBLAS's beta-0 pass costs
    /// ~0.8 µs a call (3072 calls a step), more than one fill of the whole buffer.
    static func backward(_ backend: Backend, dOut: Buffer, x: Buffer, weights: AttentionWeights,
                         gradients: AttentionWeights, shape: AttentionShape, cache: AttentionCache,
                         scratch: AttentionGradientScratch, mask: ChannelMask? = nil, dX: Buffer,
                         overwriteDX: Bool = false) throws {
        let s = shape
        let n = s.tokens
        try backend.fill(scratch.dQKV, value: 0, offset: 0, count: s.rows * s.qkvFeatures)
        try Linear.backward(backend, dOut: dOut, x: cache.merged, weight: weights.projWeight,
                            dX: scratch.dMerged, dWeight: gradients.projWeight, dBias: gradients.projBias,
                            rows: s.rows, inFeatures: s.mergedFeatures, outFeatures: s.width, overwriteDX: true)
        for head in 0..<s.heads {
            let probabilityOffset = head * s.batch * n * n
            // dProbs_h = dMerged_h · v_hᵀ
            var dProbs = GemmSpec(m: n, n: n, k: s.vDim, transB: true)
            dProbs.lda = s.mergedFeatures
            dProbs.ldb = s.qkvFeatures
            dProbs.offsetA = head * s.vDim
            dProbs.offsetB = s.vOffset + head * s.vDim
            dProbs.offsetC = probabilityOffset
            dProbs.strideA = n * s.mergedFeatures
            dProbs.strideB = n * s.qkvFeatures
            dProbs.strideC = n * n
            dProbs.batch = s.batch
            try backend.gemmStridedBatched(dProbs, a: scratch.dMerged, b: cache.qkv, c: scratch.dProbabilities)
            // dV_h += probs_hᵀ · dMerged_h
            var dV = GemmSpec(m: n, n: s.vDim, k: n, transA: true, beta: 1)
            dV.ldb = s.mergedFeatures
            dV.ldc = s.qkvFeatures
            dV.offsetA = probabilityOffset
            dV.offsetB = head * s.vDim
            dV.offsetC = s.vOffset + head * s.vDim
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
            var dQ = GemmSpec(m: n, n: s.qkDim, k: n, beta: 1)
            dQ.ldb = s.qkvFeatures
            dQ.ldc = s.qkvFeatures
            dQ.offsetA = head * s.batch * n * n
            dQ.offsetB = s.kOffset + head * s.qkDim
            dQ.offsetC = s.qOffset + head * s.qkDim
            dQ.strideA = n * n
            dQ.strideB = n * s.qkvFeatures
            dQ.strideC = n * s.qkvFeatures
            dQ.batch = s.batch
            try backend.gemmStridedBatched(dQ, a: scratch.dScores, b: cache.qkv, c: scratch.dQKV)
            var dK = dQ
            dK.transA = true
            dK.offsetB = s.qOffset + head * s.qkDim
            dK.offsetC = s.kOffset + head * s.qkDim
            try backend.gemmStridedBatched(dK, a: scratch.dScores, b: cache.qkv, c: scratch.dQKV)
        }
        if let mask, let unmasked = cache.unmaskedQKV {
            // dQKV is the gradient of the masked projection: the mask's gradient sums it against the projection
            // before the mask (the sum of the q, k and v contributions per column), and the projection's own
            // gradient is dQKV times the mask.
            if let gradient = mask.gradient {
                try backend.maskGradient(x: unmasked, dY: scratch.dQKV, dMask: gradient, rows: s.rows,
                                         cols: s.qkvFeatures)
            }
            try backend.scaleColumns(scratch.dQKV, mask: mask.values, out: scratch.dQKV, rows: s.rows,
                                     cols: s.qkvFeatures)
        }
        try Linear.backward(backend, dOut: scratch.dQKV, x: x, weight: weights.qkvWeight,
                            dX: dX, dWeight: gradients.qkvWeight, dBias: gradients.qkvBias,
                            rows: s.rows, inFeatures: s.width, outFeatures: s.qkvFeatures, overwriteDX: overwriteDX)
    }
}
