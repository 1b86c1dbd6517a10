#if canImport(Glibc)
import Glibc
#endif
import ViTForgeDevice
import ViTForgeSupport

// The fused attention's rows: equal heads, per-head widths with q/k ≠ v, a head wider than the GPU tiles (which
// sends it to the row kernels), and token counts that are not multiples of the 16-row tiles (50, 197, 257). The
// CPU forward splits the queries of the 197- and 257-token rows into 4 blocks (fewer than 16 (image, head) pairs
// and at least 96 tokens: `attentionQueryBlocks`) and keeps the others whole.

extension OpCase {
    static let attention: [OpCase] = [
        attentionRows(batch: 3, tokens: 50, qkDims: [16, 16, 16], vDims: [16, 16, 16], scale: 0.25),
        attentionRows(batch: 2, tokens: 197, qkDims: [13, 7, 29], vDims: [5, 31, 11], scale: 0.19),
        attentionRows(batch: 1, tokens: 257, qkDims: [19, 64], vDims: [33, 3], scale: 0.125),
        attentionRows(batch: 2, tokens: 37, qkDims: [131, 3], vDims: [9, 137], scale: 0.087),
        attentionRows(batch: 1, tokens: 1, qkDims: [5], vDims: [3], scale: 0.5),
        // 18 (image, head) pairs: one query block per pair however long the sequence.
        attentionRows(batch: 6, tokens: 23, qkDims: [7, 9, 5], vDims: [11, 4, 6], scale: 0.31),
    ].flatMap { $0 }

    /// A forward row and a backward row for one shape.
    static func attentionRows(batch: Int, tokens: Int, qkDims: [Int], vDims: [Int], scale: Float) -> [OpCase] {
        let layout = QKVLayout(qkDims: qkDims, vDims: vDims)
        let shape = "\(batch)×\(tokens) tokens, q/k \(qkDims), v \(vDims), scale \(scale)"
        let rows = batch * tokens
        return [
            OpCase("attentionForward \(shape)") { rng in
                let qkv = rng.values(rows * layout.qkvFeatures, in: -2 ... 2)
                let reference = Reference.attentionForward(qkv: qkv, layout: layout, batch: batch, tokens: tokens,
                                                           scale: Double(scale))
                return PreparedOp(
                    expected: [
                        ExpectedOutput("out", reference.out, Tolerance.reduction),
                        ExpectedOutput("logSumExp", reference.logSumExp, Tolerance.reduction),
                    ],
                    run: { backend in
                        let out = try backend.allocate(rows * layout.totalV)
                        let lse = try backend.allocate(layout.heads * rows)
                        try backend.attentionForward(qkv: backend.buffer(qkv), layout: layout, batch: batch,
                                                     tokens: tokens, scale: scale, out: out, logSumExp: lse)
                        return [try backend.values(out), try backend.values(lse)]
                    })
            },
            OpCase("attentionBackward \(shape)") { rng in
                let qkv = rng.values(rows * layout.qkvFeatures, in: -2 ... 2)
                let dOut = rng.values(rows * layout.totalV)
                let forward = Reference.attentionForward(qkv: qkv, layout: layout, batch: batch, tokens: tokens,
                                                         scale: Double(scale))
                let dQKV = Reference.attentionBackward(qkv: qkv, dOut: dOut, layout: layout, batch: batch,
                                                       tokens: tokens, scale: Double(scale))
                let prefill = prefill(like: dQKV, &rng)
                return PreparedOp(
                    expected: [ExpectedOutput("dQKV", elementwiseSum(prefill, dQKV), Tolerance.reduction)],
                    run: { backend in
                        let dQKVBuffer = try backend.buffer(prefill)
                        try backend.attentionBackward(
                            qkv: backend.buffer(qkv), out: backend.buffer(roundedToFloat(forward.out)),
                            logSumExp: backend.buffer(roundedToFloat(forward.logSumExp)), dOut: backend.buffer(dOut),
                            dQKV: dQKVBuffer, layout: layout, batch: batch, tokens: tokens, scale: scale)
                        return [try backend.values(dQKVBuffer)]
                    },
                    gradientChecks: [
                        GradientCheck(name: "dQKV", input: qkv, analytic: dQKV) {
                            dot(dOut, Reference.attentionForward(qkv: $0, layout: layout, batch: batch,
                                                                 tokens: tokens, scale: Double(scale)).out)
                        },
                    ])
            },
        ]
    }
}

extension Reference {
    /// Per image and head: `out_i = Σ_j softmax_j(scale·q_i·k_j)·v_j`, and each query's log-sum-exp, in float64.
    static func attentionForward(qkv: [Double], layout: QKVLayout, batch: Int, tokens: Int, scale: Double)
        -> (out: [Double], logSumExp: [Double])
    {
        let (n, features, merged) = (tokens, layout.qkvFeatures, layout.totalV)
        var out = [Double](repeating: 0, count: batch * n * merged)
        var lse = [Double](repeating: 0, count: layout.heads * batch * n)
        for head in 0 ..< layout.heads {
            for image in 0 ..< batch {
                let p = attentionProbabilities(qkv: qkv, layout: layout, head: head, image: image, tokens: n,
                                               scale: scale)
                for i in 0 ..< n {
                    lse[(head * batch + image) * n + i] = p.logSumExp[i]
                    for d in 0 ..< layout.vDims[head] {
                        var sum = 0.0
                        for j in 0 ..< n {
                            sum += p.values[i * n + j] * qkv[(image * n + j) * features + layout.vRow(head: head, dim: d)]
                        }
                        out[(image * n + i) * merged + layout.mergedColumn(head: head, dim: d)] = sum
                    }
                }
            }
        }
        return (out, lse)
    }

    /// dQKV of `Σ dOut·out` (not accumulated: the caller adds any prefill).
    static func attentionBackward(qkv: [Double], dOut: [Double], layout: QKVLayout, batch: Int, tokens: Int,
                                  scale: Double) -> [Double] {
        let (n, features, merged) = (tokens, layout.qkvFeatures, layout.totalV)
        var dQKV = [Double](repeating: 0, count: qkv.count)
        for head in 0 ..< layout.heads {
            let (qkDim, vDim) = (layout.qkDims[head], layout.vDims[head])
            for image in 0 ..< batch {
                let p = attentionProbabilities(qkv: qkv, layout: layout, head: head, image: image, tokens: n,
                                               scale: scale).values
                func element(_ token: Int, _ column: Int) -> Int { (image * n + token) * features + column }
                func dOutAt(_ token: Int, _ d: Int) -> Double {
                    dOut[(image * n + token) * merged + layout.mergedColumn(head: head, dim: d)]
                }
                // dP = dO·vᵀ; dV = Pᵀ·dO; dS = scale·P∘(dP − rowsum(P∘dP)); dQ = dS·k; dK = dSᵀ·q
                var dP = [Double](repeating: 0, count: n * n)
                for i in 0 ..< n {
                    for j in 0 ..< n {
                        var sum = 0.0
                        for d in 0 ..< vDim { sum += dOutAt(i, d) * qkv[element(j, layout.vRow(head: head, dim: d))] }
                        dP[i * n + j] = sum
                    }
                }
                for j in 0 ..< n {
                    for d in 0 ..< vDim {
                        var sum = 0.0
                        for i in 0 ..< n { sum += p[i * n + j] * dOutAt(i, d) }
                        dQKV[element(j, layout.vRow(head: head, dim: d))] += sum
                    }
                }
                var dS = [Double](repeating: 0, count: n * n)
                for i in 0 ..< n {
                    var rowDot = 0.0
                    for j in 0 ..< n { rowDot += p[i * n + j] * dP[i * n + j] }
                    for j in 0 ..< n { dS[i * n + j] = scale * p[i * n + j] * (dP[i * n + j] - rowDot) }
                }
                for i in 0 ..< n {
                    for d in 0 ..< qkDim {
                        var dq = 0.0, dk = 0.0
                        for j in 0 ..< n {
                            dq += dS[i * n + j] * qkv[element(j, layout.kRow(head: head, dim: d))]
                            dk += dS[j * n + i] * qkv[element(j, layout.qRow(head: head, dim: d))]
                        }
                        dQKV[element(i, layout.qRow(head: head, dim: d))] += dq
                        dQKV[element(i, layout.kRow(head: head, dim: d))] += dk
                    }
                }
            }
        }
        return dQKV
    }

    /// One image's and head's probabilities [tokens, tokens] and each row's log-sum-exp.
    private static func attentionProbabilities(qkv: [Double], layout: QKVLayout, head: Int, image: Int, tokens n: Int,
                                               scale: Double) -> (values: [Double], logSumExp: [Double]) {
        let features = layout.qkvFeatures
        var scores = [Double](repeating: 0, count: n * n)
        for i in 0 ..< n {
            for j in 0 ..< n {
                var sum = 0.0
                for d in 0 ..< layout.qkDims[head] {
                    sum += qkv[(image * n + i) * features + layout.qRow(head: head, dim: d)]
                        * qkv[(image * n + j) * features + layout.kRow(head: head, dim: d)]
                }
                scores[i * n + j] = sum
            }
        }
        var lse = [Double](repeating: 0, count: n)
        for i in 0 ..< n {
            let row = Array(scores[i * n ..< (i + 1) * n])
            let maximum = row.map { scale * $0 }.max() ?? 0
            lse[i] = maximum + log(row.reduce(0) { $0 + exp(scale * $1 - maximum) })
        }
        let probabilities = softmaxForward(x: scores, rows: n, cols: n, scale: scale)
        return (probabilities, lse)
    }
}
