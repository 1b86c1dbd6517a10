import Foundation
import ViTForgeFormats
import ViTForgeModel

/// A Vision Transformer in float64, written as plainly as possible (nested loops, timm's semantics, timm's key
/// names), so that it is obviously right. The model tests compare the Swift model on every backend with it (and its
/// own gradients are central finite differences of its forward); the pruning tests use `masks`: the full model with
/// removed channels masked, which a pruned model must equal.
///
/// Masked semantics: removed residual channels are zero everywhere in the residual stream and every LayerNorm
/// normalises over the kept channels only (what a physically smaller LayerNorm computes); a removed head
/// contributes nothing; removed q/k dims are zero in both q and k (the scale is unchanged); removed v dims are zero;
/// a removed MLP neuron outputs 0, or its clamp value (VBP's mean); a removed head's merged values are 0, or their
/// clamp values (VBP's head means).
public struct ReferenceViT {
    public struct BlockMasks {
        public var heads: [Bool]
        /// [head][dim]
        public var qk: [[Bool]]
        public var v: [[Bool]]
        public var mlp: [Bool]
        /// What a removed MLP neuron outputs instead (nil: 0).
        public var mlpClamp: [Double]?
        /// What a removed head's merged values are instead, per merged column `vOffset(head) + d` (nil: 0).
        public var headClamp: [Double]?

        public init(heads: [Bool], qk: [[Bool]], v: [[Bool]], mlp: [Bool], mlpClamp: [Double]?,
                    headClamp: [Double]? = nil) {
            self.heads = heads
            self.qk = qk
            self.v = v
            self.mlp = mlp
            self.mlpClamp = mlpClamp
            self.headClamp = headClamp
        }
    }

    public struct Masks {
        public var residual: [Bool]
        public var blocks: [BlockMasks]

        public init(residual: [Bool], blocks: [BlockMasks]) {
            self.residual = residual
            self.blocks = blocks
        }
    }

    public struct Block {
        var heads: Int
        /// Each head's q/k and v width (heads may differ).
        var qkDims: [Int]
        var vDims: [Int]
        var hidden: Int
        var scale: Double

        var totalQK: Int { qkDims.reduce(0, +) }
        var totalV: Int { vDims.reduce(0, +) }
        func qkOffset(_ head: Int) -> Int { qkDims[..<head].reduce(0, +) }
        func vOffset(_ head: Int) -> Int { vDims[..<head].reduce(0, +) }
    }

    /// Real-valued multipliers (the product's `BlockMasks`): per block, one per qkv output column (applied to the
    /// projection before attention) and one per MLP hidden neuron (after GELU); nil entries multiply by 1.
    public struct SoftMasks {
        public var qkvColumns: [[Double]?]
        public var mlpHidden: [[Double]?]
        /// Per block, one multiplier per token position on the LayerNorm outputs feeding attention and the MLP
        /// (ViT-Slim's token masks); nil: none.
        public var tokens: [[Double]?]? = nil

        public init(qkvColumns: [[Double]?], mlpHidden: [[Double]?]) {
            self.qkvColumns = qkvColumns
            self.mlpHidden = mlpHidden
        }
    }

    /// How a token set is applied (see `tokenSets`).
    public enum TokenPruning: Sendable {
        /// The full sequence runs through every block, but from block l on a token outside block l's set is no
        /// longer a key or value of anyone (an attention mask); average pooling reads the last set's patch tokens.
        /// The reference a physically token-pruned model must equal (issue 28, part 3).
        case masked
        /// The dropped rows are removed from the sequence before the block (what the product does).
        case gathered
    }

    public var masks: Masks?
    public var softMasks: SoftMasks?
    /// Per block, the token positions it keeps (nil: all); applied as `tokenPruning` says.
    public var tokenSets: [[Int]]?
    public var tokenPruning = TokenPruning.masked
    var channels: Int
    var imageSize: Int
    var patch: Int
    var width: Int
    var classes: Int
    var avgPooling: Bool
    var distilled: Bool
    var qkvBias: Bool
    var eps: Double
    var blocks: [Block]
    /// float64 values by timm name; tests perturb them for finite differences.
    public var parameters: [String: [Double]]

    /// The reference of a model with `config`'s shape and these float64 parameters.
    public init(config: ViTConfig, parameters: [String: [Double]], masks: Masks? = nil) {
        self.masks = masks
        channels = config.inChannels
        imageSize = config.imageSize
        patch = config.patchSize
        width = config.residualWidth
        classes = config.classes
        avgPooling = config.pooling == .avg
        distilled = config.distillationToken
        qkvBias = config.qkvBias
        eps = config.layerNormEps
        blocks = config.blocks.map {
            Block(heads: $0.heads, qkDims: $0.qkDims, vDims: $0.vDims, hidden: $0.mlpHidden, scale: $0.attentionScale)
        }
        self.parameters = parameters
    }

    var prefixTokens: Int { distilled ? 2 : 1 }
    var grid: Int { imageSize / patch }
    var tokens: Int { prefixTokens + grid * grid }

    /// Every parameter's timm name and shape.
    public func shapes() -> [(String, [Int])] {
        var list: [(String, [Int])] = [
            ("patch_embed.proj.weight", [width, channels, patch, patch]), ("patch_embed.proj.bias", [width]),
            ("cls_token", [1, 1, width]),
        ]
        if distilled { list.append(("dist_token", [1, 1, width])) }
        list.append(("pos_embed", [1, tokens, width]))
        for (i, b) in blocks.enumerated() {
            let p = "blocks.\(i)."
            let qkv = 2 * b.totalQK + b.totalV
            list += [
                (p + "norm1.weight", [width]), (p + "norm1.bias", [width]),
                (p + "attn.qkv.weight", [qkv, width]),
            ]
            if qkvBias { list.append((p + "attn.qkv.bias", [qkv])) }
            list += [
                (p + "attn.proj.weight", [width, b.totalV]), (p + "attn.proj.bias", [width]),
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

    public static func layerNorm(_ x: [Double], _ gamma: [Double], _ beta: [Double], eps: Double) -> [Double] {
        layerNorm(x, gamma, beta, eps: eps, keep: nil)
    }

    /// LayerNorm over the kept channels only; removed channels come out 0.
    public static func layerNorm(_ x: [Double], _ gamma: [Double], _ beta: [Double], eps: Double, keep: [Bool]?) -> [Double] {
        let kept = x.indices.filter { keep?[$0] ?? true }
        let n = Double(kept.count)
        let mean = kept.reduce(0) { $0 + x[$1] } / n
        let variance = kept.reduce(0) { $0 + (x[$1] - mean) * (x[$1] - mean) } / n
        let rstd = 1 / (variance + eps).squareRoot()
        return x.indices.map { (keep?[$0] ?? true) ? (x[$0] - mean) * rstd * gamma[$0] + beta[$0] : 0 }
    }

    func norm(_ x: [Double], _ name: String) -> [Double] {
        Self.layerNorm(x, p(name + ".weight"), p(name + ".bias"), eps: eps, keep: masks?.residual)
    }

    /// Zeroes removed residual channels.
    func residualMasked(_ x: [Double]) -> [Double] {
        guard let keep = masks?.residual else { return x }
        return x.indices.map { keep[$0] ? x[$0] : 0 }
    }

    /// y[o] = Σ_i W[o, i]·x[i] + b[o] with W [out, in].
    public static func linear(_ x: [Double], _ weight: [Double], _ bias: [Double]?, outFeatures: Int) -> [Double] {
        let inFeatures = x.count
        return (0..<outFeatures).map { o in
            var sum = bias?[o] ?? 0
            for i in 0..<inFeatures { sum += weight[o * inFeatures + i] * x[i] }
            return sum
        }
    }

    public static func gelu(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }

    /// Logits [batch, classes] for images [batch, channels, size, size].
    public func logits(_ images: [Double], batch: Int) -> [[Double]] {
        (0..<batch).map { image in
            let imageCount = channels * imageSize * imageSize
            let pixels = Array(images[(image * imageCount)..<((image + 1) * imageCount)])
            return logitsOfOne(pixels)
        }
    }

    public func logitsOfOne(_ pixels: [Double]) -> [Double] {
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
        x = x.map(residualMasked)
        // The full-sequence position of each row of x, and the rows that are keys/values in the current block.
        var positions = Array(0..<tokens)
        var keys = Array(0..<tokens)

        for (i, block) in blocks.enumerated() {
            let prefix = "blocks.\(i)."
            let blockMasks = masks?.blocks[i]
            if let kept = tokenSets.map({ Set($0[i]) }) {
                if tokenPruning == .gathered {
                    x = positions.indices.filter { kept.contains(positions[$0]) }.map { x[$0] }
                    positions = positions.filter { kept.contains($0) }
                }
                keys = positions.indices.filter { kept.contains(positions[$0]) }
            }
            let tokens = x.count
            let tokenScale = softMasks?.tokens?[i]
            let normed = x.indices.map { t in
                norm(x[t], prefix + "norm1").map { $0 * (tokenScale?[positions[t]] ?? 1) }
            }
            let qkvFeatures = 2 * block.totalQK + block.totalV
            var qkv = normed.map {
                Self.linear($0, p(prefix + "attn.qkv.weight"), qkvBias ? p(prefix + "attn.qkv.bias") : nil,
                            outFeatures: qkvFeatures)
            }
            var merged = [[Double]](repeating: [Double](repeating: 0, count: block.totalV), count: tokens)
            if let columns = softMasks?.qkvColumns[i] {
                for t in 0..<tokens { for c in 0..<qkvFeatures { qkv[t][c] *= columns[c] } }
            }
            if let blockMasks {
                for t in 0..<tokens {
                    for h in 0..<block.heads {
                        for d in 0..<block.qkDims[h] where !(blockMasks.heads[h] && blockMasks.qk[h][d]) {
                            qkv[t][block.qkOffset(h) + d] = 0
                            qkv[t][block.totalQK + block.qkOffset(h) + d] = 0
                        }
                        for d in 0..<block.vDims[h] where !(blockMasks.heads[h] && blockMasks.v[h][d]) {
                            qkv[t][2 * block.totalQK + block.vOffset(h) + d] = 0
                        }
                    }
                }
            }
            for h in 0..<block.heads where blockMasks?.heads[h] ?? true {
                let qStart = block.qkOffset(h)
                let kStart = block.totalQK + block.qkOffset(h)
                let vStart = 2 * block.totalQK + block.vOffset(h)
                let mergedStart = block.vOffset(h)
                for t in 0..<tokens {
                    var scores = keys.map { u -> Double in
                        var dot = 0.0
                        for d in 0..<block.qkDims[h] { dot += qkv[t][qStart + d] * qkv[u][kStart + d] }
                        return dot * block.scale
                    }
                    let maximum = scores.max() ?? 0
                    scores = scores.map { exp($0 - maximum) }
                    let total = scores.reduce(0, +)
                    for (index, u) in keys.enumerated() {
                        let weight = scores[index] / total
                        for d in 0..<block.vDims[h] { merged[t][mergedStart + d] += weight * qkv[u][vStart + d] }
                    }
                }
            }
            if let blockMasks, let clamp = blockMasks.headClamp {
                for h in 0..<block.heads where !blockMasks.heads[h] {
                    let start = block.vOffset(h)
                    for t in 0..<tokens { for d in 0..<block.vDims[h] { merged[t][start + d] = clamp[start + d] } }
                }
            }
            for t in 0..<tokens {
                let projected = residualMasked(Self.linear(merged[t], p(prefix + "attn.proj.weight"),
                                                           p(prefix + "attn.proj.bias"), outFeatures: width))
                for d in 0..<width { x[t][d] += projected[d] }
            }
            for t in 0..<tokens {
                let n2 = norm(x[t], prefix + "norm2").map { $0 * (tokenScale?[positions[t]] ?? 1) }
                var hidden = Self.linear(n2, p(prefix + "mlp.fc1.weight"), p(prefix + "mlp.fc1.bias"),
                                         outFeatures: block.hidden).map(Self.gelu)
                if let blockMasks {
                    for j in 0..<block.hidden where !blockMasks.mlp[j] { hidden[j] = blockMasks.mlpClamp?[j] ?? 0 }
                }
                if let scales = softMasks?.mlpHidden[i] {
                    for j in 0..<block.hidden { hidden[j] *= scales[j] }
                }
                let out = residualMasked(Self.linear(hidden, p(prefix + "mlp.fc2.weight"), p(prefix + "mlp.fc2.bias"),
                                                     outFeatures: width))
                for d in 0..<width { x[t][d] += out[d] }
            }
        }

        if avgPooling {
            var pooled = [Double](repeating: 0, count: width)
            let pooledRows = keys.filter { positions[$0] >= prefixTokens }
            for t in pooledRows { for d in 0..<width { pooled[d] += x[t][d] / Double(pooledRows.count) } }
            let normed = norm(pooled, "fc_norm")
            return Self.linear(normed, p("head.weight"), p("head.bias"), outFeatures: classes)
        }
        let cls = norm(x[0], "norm")
        let logits = Self.linear(cls, p("head.weight"), p("head.bias"), outFeatures: classes)
        guard distilled else { return logits }
        let dist = norm(x[1], "norm")
        let distLogits = Self.linear(dist, p("head_dist.weight"), p("head_dist.bias"), outFeatures: classes)
        return zip(logits, distLogits).map { ($0 + $1) / 2 }
    }

    /// Mean cross-entropy (no smoothing) of the logits against `labels`.
    public func loss(_ images: [Double], labels: [Int], batch: Int) -> Double {
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
