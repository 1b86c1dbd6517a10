import ViTForgeDevice
import ViTForgeFormats

/// Patch embedding plus the prefix tokens and position embedding: images [batch, channels, height, width] →
/// tokens [batch, prefix + patches, width] = [cls, (dist), conv(images)] + pos_embed.
///
/// The convolution with stride = kernel = patch is an im2col gather followed by one GEMM; the token sequence is
/// assembled with a second gather from [patch rows | cls | dist], so the whole embedding is 4 device operations
/// and needs no host work per step (the index maps are built once per batch size).
struct PatchEmbeddingShape {
    var batch: Int
    var channels: Int
    var imageHeight: Int
    var imageWidth: Int
    var patch: Int
    var width: Int
    var prefixTokens: Int

    var gridHeight: Int { imageHeight / patch }
    var gridWidth: Int { imageWidth / patch }
    var patches: Int { gridHeight * gridWidth }
    var tokens: Int { prefixTokens + patches }
    /// Columns of the im2col matrix, in the (channel, ky, kx) order of the flattened conv weight [width, c, p, p].
    var patchFeatures: Int { channels * patch * patch }
    var imageCount: Int { channels * imageHeight * imageWidth }
}

struct PatchEmbeddingWeights {
    let projWeight: Buffer  // [width, channels·patch·patch]
    let projBias: Buffer    // [width]
    let prefixTokens: [Buffer]  // cls_token, then dist_token, each [width]
    let posEmbed: Buffer    // [tokens, width]
}

/// Index maps and buffers for one batch size.
final class PatchEmbeddingPlan {
    let shape: PatchEmbeddingShape
    let im2colIndices: Buffer      // [batch·patches·patchFeatures] → image elements
    let tokenIndices: Buffer       // [batch·tokens·width] → elements of `source`
    let patchRowIndices: Buffer    // [batch·patches·width] → elements of tokens (patch rows only)
    let ones: Buffer               // [batch]
    let patchMatrix: Buffer        // [batch·patches, patchFeatures]
    let source: Buffer             // [batch·patches + prefixTokens, width]
    let dPatchRows: Buffer         // [batch·patches, width]

    init(_ backend: Backend, _ shape: PatchEmbeddingShape) throws {
        self.shape = shape
        let s = shape
        var im2col = [Int32](repeating: 0, count: s.batch * s.patches * s.patchFeatures)
        var i = 0
        for image in 0..<s.batch {
            for gridY in 0..<s.gridHeight {
                for gridX in 0..<s.gridWidth {
                    for channel in 0..<s.channels {
                        for ky in 0..<s.patch {
                            let rowStart = image * s.imageCount + channel * s.imageHeight * s.imageWidth
                                + (gridY * s.patch + ky) * s.imageWidth + gridX * s.patch
                            for kx in 0..<s.patch {
                                im2col[i] = Int32(rowStart + kx)
                                i += 1
                            }
                        }
                    }
                }
            }
        }
        var tokenMap = [Int32](repeating: 0, count: s.batch * s.tokens * s.width)
        var patchRows = [Int32](repeating: 0, count: s.batch * s.patches * s.width)
        i = 0
        var j = 0
        for image in 0..<s.batch {
            for token in 0..<s.tokens {
                let sourceRow = token < s.prefixTokens
                    ? s.batch * s.patches + token
                    : image * s.patches + token - s.prefixTokens
                for column in 0..<s.width {
                    tokenMap[i] = Int32(sourceRow * s.width + column)
                    if token >= s.prefixTokens {
                        patchRows[j] = Int32(i)
                        j += 1
                    }
                    i += 1
                }
            }
        }
        im2colIndices = try backend.makeBuffer(im2col)
        tokenIndices = try backend.makeBuffer(tokenMap)
        patchRowIndices = try backend.makeBuffer(patchRows)
        ones = try backend.makeBuffer([Float](repeating: 1, count: s.batch))
        patchMatrix = try backend.allocate(s.batch * s.patches * s.patchFeatures)
        source = try backend.allocate((s.batch * s.patches + s.prefixTokens) * s.width)
        dPatchRows = try backend.allocate(s.batch * s.patches * s.width)
    }
}

enum PatchEmbedding {
    /// tokens [batch·tokens, width] from images [batch, channels, height, width].
    static func forward(_ backend: Backend, images: Buffer, weights: PatchEmbeddingWeights,
                        plan: PatchEmbeddingPlan, tokens: Buffer) throws {
        let s = plan.shape
        try backend.gather(src: images, indices: plan.im2colIndices, dst: plan.patchMatrix,
                           count: s.batch * s.patches * s.patchFeatures)
        try Linear.forward(backend, x: plan.patchMatrix, weight: weights.projWeight, bias: weights.projBias,
                           out: plan.source, rows: s.batch * s.patches, inFeatures: s.patchFeatures,
                           outFeatures: s.width)
        for (index, token) in weights.prefixTokens.enumerated() {
            try backend.copy(token, srcOffset: 0, to: plan.source,
                             dstOffset: (s.batch * s.patches + index) * s.width, count: s.width)
        }
        try backend.gather(src: plan.source, indices: plan.tokenIndices, dst: tokens,
                           count: s.batch * s.tokens * s.width)
        // pos_embed is the same for every image: a "bias" over rows = images, cols = tokens·width.
        try backend.addBias(tokens, bias: weights.posEmbed, rows: s.batch, cols: s.tokens * s.width)
    }

    /// Accumulates the embedding's parameter gradients from dTokens [batch·tokens, width].
    static func backward(_ backend: Backend, dTokens: Buffer, weights: PatchEmbeddingWeights,
                         gradients: PatchEmbeddingWeights, plan: PatchEmbeddingPlan) throws {
        let s = plan.shape
        try backend.addBiasBackward(dOut: dTokens, dBias: gradients.posEmbed, rows: s.batch, cols: s.tokens * s.width)
        for (index, dToken) in gradients.prefixTokens.enumerated() {
            // d token += Σ_images dTokens[image, index, :], as ones[1, batch] · (row `index` of each image).
            var sum = GemmSpec(m: 1, n: s.width, k: s.batch, beta: 1)
            sum.ldb = s.tokens * s.width
            sum.offsetB = index * s.width
            try backend.gemm(sum, a: plan.ones, b: dTokens, c: dToken)
        }
        try backend.gather(src: dTokens, indices: plan.patchRowIndices, dst: plan.dPatchRows,
                           count: s.batch * s.patches * s.width)
        try Linear.backward(backend, dOut: plan.dPatchRows, x: plan.patchMatrix, weight: weights.projWeight,
                            dX: nil, dWeight: gradients.projWeight, dBias: gradients.projBias,
                            rows: s.batch * s.patches, inFeatures: s.patchFeatures, outFeatures: s.width)
    }
}
