import Foundation

/// A Vision Transformer in float64, written as plainly as possible (nested loops, timm's semantics, timm's key
/// names), so that it is obviously right. The Swift model on every backend is compared with it, and its own
/// gradients are central finite differences of its forward.
struct ReferenceViT {
    struct Block {
        var heads: Int
        var qkDim: Int
        var vDim: Int
        var hidden: Int
        var scale: Double
    }

    var channels: Int
    var imageSize: Int
    var patch: Int
    var width: Int
    var classes: Int
    var avgPooling: Bool
    var distilled: Bool
    var qkvBias: Bool
    var eps: Double = 1e-6
    var blocks: [Block]
    var parameters: [String: [Double]]

    var prefixTokens: Int { distilled ? 2 : 1 }
    var grid: Int { imageSize / patch }
    var tokens: Int { prefixTokens + grid * grid }

    /// Every parameter's timm name and shape.
    func shapes() -> [(String, [Int])] {
        var list: [(String, [Int])] = [
            ("patch_embed.proj.weight", [width, channels, patch, patch]), ("patch_embed.proj.bias", [width]),
            ("cls_token", [1, 1, width]),
        ]
        if distilled { list.append(("dist_token", [1, 1, width])) }
        list.append(("pos_embed", [1, tokens, width]))
        for (i, b) in blocks.enumerated() {
            let p = "blocks.\(i)."
            let qkv = b.heads * (2 * b.qkDim + b.vDim)
            list += [
                (p + "norm1.weight", [width]), (p + "norm1.bias", [width]),
                (p + "attn.qkv.weight", [qkv, width]),
            ]
            if qkvBias { list.append((p + "attn.qkv.bias", [qkv])) }
            list += [
                (p + "attn.proj.weight", [width, b.heads * b.vDim]), (p + "attn.proj.bias", [width]),
                (p + "norm2.weight", [width]), (p + "norm2.bias", [width]),
                (p + "mlp.fc1.weight", [b.hidden, width]), (p + "mlp.fc1.bias", [b.hidden]),
                (p + "mlp.fc2.weight", [width, b.hidden]), (p + "mlp.fc2.bias", [width]),
            ]
        }
        let finalNorm = avgPooling ? "fc_norm" : "norm"
        list += [(finalNorm + ".weight", [width]), (finalNorm + ".bias", [width]),
                 ("head.weight", [classes, width]), ("head.bias", [classes])]
        if distilled { list += [("head_dist.weight", [classes, width]), ("head_dist.bias", [classes])] }
        return list
    }

    func p(_ name: String) -> [Double] {
        guard let value = parameters[name] else { fatalError("reference model has no \(name)") }
        return value
    }

    static func layerNorm(_ x: [Double], _ gamma: [Double], _ beta: [Double], eps: Double) -> [Double] {
        let n = Double(x.count)
        let mean = x.reduce(0, +) / n
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
        let rstd = 1 / (variance + eps).squareRoot()
        return x.indices.map { (x[$0] - mean) * rstd * gamma[$0] + beta[$0] }
    }

    /// y[o] = Σ_i W[o, i]·x[i] + b[o] with W [out, in].
    static func linear(_ x: [Double], _ weight: [Double], _ bias: [Double]?, outFeatures: Int) -> [Double] {
        let inFeatures = x.count
        return (0..<outFeatures).map { o in
            var sum = bias?[o] ?? 0
            for i in 0..<inFeatures { sum += weight[o * inFeatures + i] * x[i] }
            return sum
        }
    }

    static func gelu(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }

    /// Logits [batch, classes] for images [batch, channels, size, size].
    func logits(_ images: [Double], batch: Int) -> [[Double]] {
        (0..<batch).map { image in
            let imageCount = channels * imageSize * imageSize
            let pixels = Array(images[(image * imageCount)..<((image + 1) * imageCount)])
            return logitsOfOne(pixels)
        }
    }

    func logitsOfOne(_ pixels: [Double]) -> [Double] {
        let convWeight = p("patch_embed.proj.weight"), convBias = p("patch_embed.proj.bias")
        let pos = p("pos_embed")
        var x: [[Double]] = []
        x.append(p("cls_token"))
        if distilled { x.append(p("dist_token")) }
        for gy in 0..<grid {
            for gx in 0..<grid {
                var token = [Double](repeating: 0, count: width)
                for d in 0..<width {
                    var sum = convBias[d]
                    for c in 0..<channels {
                        for ky in 0..<patch {
                            for kx in 0..<patch {
                                let w = convWeight[((d * channels + c) * patch + ky) * patch + kx]
                                sum += w * pixels[(c * imageSize + gy * patch + ky) * imageSize + gx * patch + kx]
                            }
                        }
                    }
                    token[d] = sum
                }
                x.append(token)
            }
        }
        for t in 0..<tokens { for d in 0..<width { x[t][d] += pos[t * width + d] } }

        for (i, block) in blocks.enumerated() {
            let prefix = "blocks.\(i)."
            let normed = x.map { Self.layerNorm($0, p(prefix + "norm1.weight"), p(prefix + "norm1.bias"), eps: eps) }
            let qkvFeatures = block.heads * (2 * block.qkDim + block.vDim)
            let qkv = normed.map {
                Self.linear($0, p(prefix + "attn.qkv.weight"), qkvBias ? p(prefix + "attn.qkv.bias") : nil,
                            outFeatures: qkvFeatures)
            }
            var merged = [[Double]](repeating: [Double](repeating: 0, count: block.heads * block.vDim), count: tokens)
            for h in 0..<block.heads {
                let qStart = h * block.qkDim
                let kStart = block.heads * block.qkDim + h * block.qkDim
                let vStart = 2 * block.heads * block.qkDim + h * block.vDim
                for t in 0..<tokens {
                    var scores = (0..<tokens).map { u -> Double in
                        var dot = 0.0
                        for d in 0..<block.qkDim { dot += qkv[t][qStart + d] * qkv[u][kStart + d] }
                        return dot * block.scale
                    }
                    let maximum = scores.max() ?? 0
                    scores = scores.map { exp($0 - maximum) }
                    let total = scores.reduce(0, +)
                    for u in 0..<tokens {
                        let weight = scores[u] / total
                        for d in 0..<block.vDim { merged[t][h * block.vDim + d] += weight * qkv[u][vStart + d] }
                    }
                }
            }
            for t in 0..<tokens {
                let projected = Self.linear(merged[t], p(prefix + "attn.proj.weight"), p(prefix + "attn.proj.bias"),
                                            outFeatures: width)
                for d in 0..<width { x[t][d] += projected[d] }
            }
            for t in 0..<tokens {
                let n2 = Self.layerNorm(x[t], p(prefix + "norm2.weight"), p(prefix + "norm2.bias"), eps: eps)
                let hidden = Self.linear(n2, p(prefix + "mlp.fc1.weight"), p(prefix + "mlp.fc1.bias"),
                                         outFeatures: block.hidden).map(Self.gelu)
                let out = Self.linear(hidden, p(prefix + "mlp.fc2.weight"), p(prefix + "mlp.fc2.bias"),
                                      outFeatures: width)
                for d in 0..<width { x[t][d] += out[d] }
            }
        }

        if avgPooling {
            var pooled = [Double](repeating: 0, count: width)
            for t in prefixTokens..<tokens { for d in 0..<width { pooled[d] += x[t][d] / Double(tokens - prefixTokens) } }
            let normed = Self.layerNorm(pooled, p("fc_norm.weight"), p("fc_norm.bias"), eps: eps)
            return Self.linear(normed, p("head.weight"), p("head.bias"), outFeatures: classes)
        }
        let cls = Self.layerNorm(x[0], p("norm.weight"), p("norm.bias"), eps: eps)
        let logits = Self.linear(cls, p("head.weight"), p("head.bias"), outFeatures: classes)
        guard distilled else { return logits }
        let dist = Self.layerNorm(x[1], p("norm.weight"), p("norm.bias"), eps: eps)
        let distLogits = Self.linear(dist, p("head_dist.weight"), p("head_dist.bias"), outFeatures: classes)
        return zip(logits, distLogits).map { ($0 + $1) / 2 }
    }

    /// Mean cross-entropy (no smoothing) of the logits against `labels`.
    func loss(_ images: [Double], labels: [Int], batch: Int) -> Double {
        let all = logits(images, batch: batch)
        var total = 0.0
        for (row, label) in zip(all, labels) {
            let maximum = row.max() ?? 0
            let logSum = log(row.reduce(0) { $0 + exp($1 - maximum) }) + maximum
            total += logSum - row[label]
        }
        return total / Double(batch)
    }
}
