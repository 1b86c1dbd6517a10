import CBLAS
import ViTForgeSupport

/// The fused attention on the CPU: one (image, head) at a time per worker, its [tokens × tokens] scores in a
/// per-worker scratch that stays in L2 (197² floats = 152 KiB) from the q·kᵀ product through the softmax to the
/// product with v, instead of every head's matrices written to memory by one pass and read back by the next
/// (the unfused path: ~60 MB per DeiT-S block at batch 64). The backward recomputes the scores from q, k and the
/// saved log-sum-exps, one product more than keeping them, which costs less than writing and reading them back.
extension CPUBackend {
    public func uncheckedAttentionForward(qkv: Buffer, layout: QKVLayout, batch: Int, tokens: Int, scale: Float,
                                          out: Buffer, logSumExp: Buffer) throws {
        let shape = attentionShape(layout: layout, batch: batch, tokens: tokens)
        let qkv = pointer(qkv)
        let out = pointer(out)
        let logSumExp = pointer(logSumExp)
        let n = tokens, features = layout.qkvFeatures, merged = layout.totalV
        let blocks = Self.attentionQueryBlocks(items: shape.items, tokens: n)
        let blockRows = (n + blocks - 1) / blocks
        parallelChunks(shape.items * blocks, costPerItem: shape.costPerItem / blocks) { units in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * n)
            defer { scores.deallocate() }
            for unit in units {
                // Image-major: one image's heads in a row, while its q/k/v rows are in cache.
                let (item, block) = (unit / blocks, unit % blocks)
                let (image, head) = (item / layout.heads, item % layout.heads)
                let first = block * blockRows, m = min(blockRows, n - first)
                guard m > 0 else { continue }
                let rows = qkv + image * n * features
                // scores = scale·q·kᵀ for this block's queries against every key
                var product = GemmSpec(m: m, n: n, k: layout.qkDims[head], transB: true, alpha: scale)
                product.lda = features
                product.ldb = features
                sgemm(product, rows + first * features + layout.qRow(head: head, dim: 0),
                      rows + layout.kRow(head: head, dim: 0), scores)
                // Each row: softmax in place, its log-sum-exp saved for the backward.
                let lse = logSumExp + (head * batch + image) * n + first
                for i in 0 ..< m { lse[i] = softmaxRow(scores + i * n, scores + i * n, n, scale: 1) }
                // out[block's rows, head's columns] = probabilities·v
                guard layout.vDims[head] > 0 else { continue }
                var weighted = GemmSpec(m: m, n: layout.vDims[head], k: n)
                weighted.ldb = features
                weighted.ldc = merged
                sgemm(weighted, scores, rows + layout.vRow(head: head, dim: 0),
                      out + (image * n + first) * merged + layout.mergedColumn(head: head, dim: 0))
            }
        }
    }

    /// Query blocks per (image, head) in the forward: 1 when there are enough pairs to spread over the workers
    /// (16, more than any core count this runs on splits unevenly by much), else up to 4 blocks of at least 48
    /// queries, so that DeiT's 3 heads at batch 1 do not leave one of 2 cores idle a third of the time (5% of its
    /// batch-1 latency). Blocks of 25 queries (fm-vit-c's 50 tokens) cost more than they balance (3-7% slower), so
    /// short sequences stay whole. It depends on the shape only, never on the thread count.
    static func attentionQueryBlocks(items: Int, tokens: Int) -> Int {
        items >= 16 ? 1 : max(1, min(4, tokens / 48))
    }

    public func uncheckedAttentionBackward(qkv: Buffer, out: Buffer, logSumExp: Buffer, dOut: Buffer, dQKV: Buffer,
                                           layout: QKVLayout, batch: Int, tokens: Int, scale: Float) throws {
        let shape = attentionShape(layout: layout, batch: batch, tokens: tokens)
        let qkv = pointer(qkv)
        _ = pointer(out)
        let logSumExp = pointer(logSumExp)
        let dOut = pointer(dOut)
        let dQKV = pointer(dQKV)
        let n = tokens, features = layout.qkvFeatures, merged = layout.totalV
        parallelChunks(shape.items, costPerItem: 2 * shape.costPerItem) { items in
            let probabilities = UnsafeMutablePointer<Float>.allocate(capacity: 2 * n * n)
            defer { probabilities.deallocate() }
            let dScores = probabilities + n * n
            for item in items {
                let (image, head) = (item / layout.heads, item % layout.heads)
                let (qkDim, vDim) = (layout.qkDims[head], layout.vDims[head])
                // A head without v features outputs 0 whatever its probabilities: no gradient reaches q, k or v.
                guard vDim > 0 else { continue }
                let rows = qkv + image * n * features, dRows = dQKV + image * n * features
                let q = layout.qRow(head: head, dim: 0), k = layout.kRow(head: head, dim: 0)
                let v = layout.vRow(head: head, dim: 0)
                let dHead = dOut + image * n * merged + layout.mergedColumn(head: head, dim: 0)
                // probabilities = exp(scale·q·kᵀ − logSumExp), row by row
                var product = GemmSpec(m: n, n: n, k: qkDim, transB: true, alpha: scale)
                product.lda = features
                product.ldb = features
                sgemm(product, rows + q, rows + k, probabilities)
                let lse = logSumExp + (head * batch + image) * n
                for i in 0 ..< n { exponentiateShifted(probabilities + i * n, n, shift: lse[i]) }
                // dProbabilities = dOut_h·vᵀ ;  dV += probabilitiesᵀ·dOut_h
                var dProbabilities = GemmSpec(m: n, n: n, k: vDim, transB: true)
                dProbabilities.lda = merged
                dProbabilities.ldb = features
                sgemm(dProbabilities, dHead, rows + v, dScores)
                var dV = GemmSpec(m: n, n: vDim, k: n, transA: true, beta: 1)
                dV.ldb = merged
                dV.ldc = features
                sgemm(dV, probabilities, dHead, dRows + v)
                guard qkDim > 0 else { continue }
                // dScores = scale·P∘(dP − Σ_j P·dP), the softmax backward with the scale folded in
                for i in 0 ..< n {
                    let p = probabilities + i * n, d = dScores + i * n
                    let dot = Float(dotAsDouble(p, d, n))
                    for j in 0 ..< n { d[j] = scale * p[j] * (d[j] - dot) }
                }
                // dQ += dScores·k ;  dK += dScoresᵀ·q
                var dQ = GemmSpec(m: n, n: qkDim, k: n, beta: 1)
                dQ.ldb = features
                dQ.ldc = features
                sgemm(dQ, dScores, rows + k, dRows + q)
                var dK = dQ
                dK.transA = true
                sgemm(dK, dScores, rows + q, dRows + k)
            }
        }
    }

    /// The sizes of a fused attention call; `items` counts its (image, head) pairs.
    private func attentionShape(layout: QKVLayout, batch: Int, tokens: Int)
        -> (rows: Int, items: Int, logSumExpCount: Int, costPerItem: Int)
    {
        let items = layout.heads * batch
        let widest = (layout.qkDims.max() ?? 0) + (layout.vDims.max() ?? 0)
        return (batch * tokens, items, items * tokens, tokens * tokens * max(widest, 1))
    }
}
