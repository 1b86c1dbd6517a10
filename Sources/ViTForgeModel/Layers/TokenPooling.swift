import ViTForgeDevice
import ViTForgeFormats

/// Index maps and scratch for pooling one batch.
final class PoolingPlan {
    let batch: Int
    let tokens: Int
    let width: Int
    let prefixTokens: Int
    /// Element indices of token row `t` of every image, for each prefix token t (token pooling, distillation).
    let prefixRowIndices: [Buffer]
    let ones: Buffer  // [tokens] for average pooling

    init(_ backend: Backend, batch: Int, tokens: Int, width: Int, prefixTokens: Int) throws {
        self.batch = batch
        self.tokens = tokens
        self.width = width
        self.prefixTokens = prefixTokens
        prefixRowIndices = try (0..<max(prefixTokens, 1)).map { token in
            var indices = [Int32](repeating: 0, count: batch * width)
            for image in 0..<batch {
                for column in 0..<width {
                    indices[image * width + column] = Int32((image * tokens + token) * width + column)
                }
            }
            return try backend.makeBuffer(indices)
        }
        ones = try backend.makeBuffer([Float](repeating: 1, count: tokens))
    }

    var patches: Int { tokens - prefixTokens }
}

enum TokenPooling {
    /// pooled [batch, width] = token row `token` of every image.
    static func selectForward(_ backend: Backend, x: Buffer, token: Int, plan: PoolingPlan, pooled: Buffer) throws {
        try backend.gather(src: x, indices: plan.prefixRowIndices[token], dst: pooled, count: plan.batch * plan.width)
    }

    static func selectBackward(_ backend: Backend, dPooled: Buffer, token: Int, plan: PoolingPlan, dX: Buffer) throws {
        try backend.scatterAdd(src: dPooled, indices: plan.prefixRowIndices[token], dst: dX,
                               count: plan.batch * plan.width)
    }

    /// pooled[b] = mean of the patch rows of image b: a batch of ones[1, patches]·x_b[patches, width] / patches.
    static func averageForward(_ backend: Backend, x: Buffer, plan: PoolingPlan, pooled: Buffer) throws {
        var mean = GemmSpec(m: 1, n: plan.width, k: plan.patches, alpha: 1 / Float(plan.patches))
        mean.offsetB = plan.prefixTokens * plan.width
        mean.strideA = 0
        mean.strideB = plan.tokens * plan.width
        mean.strideC = plan.width
        mean.batch = plan.batch
        try backend.gemmStridedBatched(mean, a: plan.ones, b: x, c: pooled)
    }

    /// dX_b[patch rows] += onesᵀ·dPooled_b / patches.
    static func averageBackward(_ backend: Backend, dPooled: Buffer, plan: PoolingPlan, dX: Buffer) throws {
        var spread = GemmSpec(m: plan.patches, n: plan.width, k: 1, alpha: 1 / Float(plan.patches), beta: 1)
        spread.offsetC = plan.prefixTokens * plan.width
        spread.strideA = 0
        spread.strideB = plan.width
        spread.strideC = plan.tokens * plan.width
        spread.batch = plan.batch
        try backend.gemmStridedBatched(spread, a: plan.ones, b: dPooled, c: dX)
    }
}
