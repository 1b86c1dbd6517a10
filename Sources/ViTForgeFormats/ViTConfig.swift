import Foundation
import ViTForgeSupport

/// How the classifier reads the token sequence (timm `global_pool`).
public enum Pooling: String, Codable, Sendable {
    /// `x[:, 0]` after the final `norm` (the class token).
    case token
    /// Mean over the patch tokens, prefix tokens excluded, then `fc_norm` (timm's `norm` is Identity then).
    case avg
}

/// One transformer block's widths. Pruning changes them per block; the residual width is shared by all blocks.
/// Heads may also differ from each other (ViT-Slim's extraction keeps a different number of dims in every head):
/// then `headQKDims`/`headVDims` hold each head's widths and `qkDim`/`vDim` the widest head's.
public struct BlockConfig: Codable, Equatable, Sendable {
    public var heads: Int
    /// Width of each head's query and key (they meet in `q·kᵀ`, so they are pruned together); the widest head's
    /// when heads differ.
    public var qkDim: Int
    /// Width of each head's value, which may differ from `qkDim` after pruning; the widest head's when heads differ.
    public var vDim: Int
    /// Each head's q/k width when the heads differ; nil when every head has `qkDim` (what files written before
    /// per-head widths hold).
    public var headQKDims: [Int]?
    /// Each head's v width when the heads differ; nil when every head has `vDim`.
    public var headVDims: [Int]?
    public var mlpHidden: Int
    /// Multiplies `q·kᵀ` before the softmax. The original model's `qkDim^-0.5`, kept when `qkDim` is pruned so the
    /// pruned model computes what the masked full model computes (REFERENCE.md §1.3, §6 risk 1).
    public var attentionScale: Double

    public init(heads: Int, qkDim: Int, vDim: Int, mlpHidden: Int, attentionScale: Double? = nil) {
        self.heads = heads
        self.qkDim = qkDim
        self.vDim = vDim
        self.mlpHidden = mlpHidden
        self.attentionScale = attentionScale ?? 1 / Double(qkDim).squareRoot()
    }

    /// Heads with their own widths (`qkDims[h]`, `vDims[h]`, at least 1 each). Equal heads are stored as a
    /// uniform block, so a model that happens to be uniform reads as one.
    public init(qkDims: [Int], vDims: [Int], mlpHidden: Int, attentionScale: Double) {
        heads = qkDims.count
        qkDim = qkDims.max() ?? 0
        vDim = vDims.max() ?? 0
        let uniform = Set(qkDims).count <= 1 && Set(vDims).count <= 1
        headQKDims = uniform ? nil : qkDims
        headVDims = uniform ? nil : vDims
        self.mlpHidden = mlpHidden
        self.attentionScale = attentionScale
    }

    /// Each head's q/k width.
    public var qkDims: [Int] { headQKDims ?? Array(repeating: qkDim, count: heads) }
    /// Each head's v width.
    public var vDims: [Int] { headVDims ?? Array(repeating: vDim, count: heads) }
    /// A list of per-head widths for tables: "48" when all heads have 48, "3,5,2" otherwise.
    public static func widths(_ dims: [Int]) -> String {
        Set(dims).count <= 1 ? String(dims.first ?? 0) : dims.map(String.init).joined(separator: ",")
    }

    /// Whether every head has the same widths.
    public var hasUniformHeads: Bool { headQKDims == nil && headVDims == nil }
    /// Rows of the fused `attn.qkv` weight: q (every head's q/k dims), then k (the same), then v (every head's v).
    public var qkvRows: Int { hasUniformHeads ? heads * (2 * qkDim + vDim) : 2 * qkDims.reduce(0, +) + attentionWidth }
    /// Columns of `attn.proj.weight`: the merged heads' values.
    public var attentionWidth: Int { hasUniformHeads ? heads * vDim : vDims.reduce(0, +) }
}

/// A Vision Transformer as timm's `VisionTransformer` (and DeiT's `VisionTransformerDistilled`) builds it, with the
/// per-block widths a pruned model needs. Stored as JSON under the safetensors metadata key `vitforge.config`.
public struct ViTConfig: Codable, Equatable, Sendable {
    /// Bumped when a field changes meaning or is added; readers refuse versions they do not know.
    /// Version 2 added `classNames`, `preprocessing` and `heldOut` (all optional); version 1 files still load.
    public static let currentVersion = 2
    /// Versions this build reads (3: `tokenSets`, written only by models that have them, see TokenSets.swift).
    public static let readableVersions = 1...3
    /// The safetensors `__metadata__` key holding this configuration as a JSON string.
    public static let metadataKey = "vitforge.config"

    /// Limits checked by `problem()`; see there.
    public static let maximumSide = 1 << 14
    public static let maximumWidth = 1 << 16
    public static let maximumDepth = 1 << 10
    /// 2^31 floats (8 GiB): ViT-G/14 has 1.8 × 10^9 parameters.
    public static let maximumParameters = 1 << 31

    public var version: Int = ViTConfig.currentVersion
    /// Side of the square input image, in pixels.
    public var imageSize: Int
    /// Side of the square patch (the patch-embedding convolution's kernel and stride).
    public var patchSize: Int
    public var inChannels: Int
    public var classes: Int
    /// The embedding (residual stream) width, timm's `embed_dim`.
    public var residualWidth: Int
    public var blocks: [BlockConfig]
    /// Whether `attn.qkv` has a bias (timm `qkv_bias`); the same for every block.
    public var qkvBias: Bool
    public var pooling: Pooling
    public var classToken: Bool
    /// DeiT's distillation token and second head (`dist_token`, `head_dist`); inference averages the two heads.
    public var distillationToken: Bool
    public var layerNormEps: Double
    /// The data set's class of each output when the head serves a subset (`train --remap-labels`, `prune --method
    /// vulcan --trim-head`): output k predicts class `classIds[k]`. Nil: output k is class k.
    public var classIds: [Int]?
    /// The name of each output's class (`classNames[k]` for output k), when known: from the data set a model was
    /// trained on, or an HF `config.json`'s `id2label`. Plain timm files have none. (Version 2.)
    public var classNames: [String]?
    /// How images become this model's input (version 2); nil for files that do not say (a plain timm file).
    public var preprocessing: InputPreprocessing?
    /// The validation part of a folder without splits that training held out (version 2).
    public var heldOut: HeldOutSplit?
    /// Per block, the token positions it runs on (static token pruning, version 3); nil: every block runs on every
    /// token. See TokenSets.swift.
    public var tokenSets: [[Int]]?

    public init(imageSize: Int, patchSize: Int, inChannels: Int, classes: Int, residualWidth: Int,
                blocks: [BlockConfig], qkvBias: Bool = true, pooling: Pooling = .token, classToken: Bool = true,
                distillationToken: Bool = false, layerNormEps: Double = 1e-6) {
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.inChannels = inChannels
        self.classes = classes
        self.residualWidth = residualWidth
        self.blocks = blocks
        self.qkvBias = qkvBias
        self.pooling = pooling
        self.classToken = classToken
        self.distillationToken = distillationToken
        self.layerNormEps = layerNormEps
    }

    /// A uniform timm model: `depth` blocks of `heads` heads of `embedDim / heads`, MLP `mlpRatio · embedDim`.
    public static func timm(imageSize: Int, patchSize: Int, inChannels: Int = 3, classes: Int, embedDim: Int,
                            depth: Int, heads: Int, mlpRatio: Double = 4, qkvBias: Bool = true,
                            pooling: Pooling = .token, classToken: Bool = true,
                            distillationToken: Bool = false) -> ViTConfig {
        let headDim = embedDim / max(heads, 1)
        let block = BlockConfig(heads: heads, qkDim: headDim, vDim: headDim,
                                mlpHidden: Int((Double(embedDim) * mlpRatio).rounded()))
        return ViTConfig(imageSize: imageSize, patchSize: patchSize, inChannels: inChannels, classes: classes,
                         residualWidth: embedDim, blocks: Array(repeating: block, count: depth), qkvBias: qkvBias,
                         pooling: pooling, classToken: classToken, distillationToken: distillationToken)
    }

    public var depth: Int { blocks.count }
    public var gridSize: Int { imageSize / patchSize }
    public var patchCount: Int { gridSize * gridSize }
    /// Class and distillation tokens, in front of the patch tokens.
    public var prefixTokens: Int { (classToken ? 1 : 0) + (distillationToken ? 1 : 0) }
    public var tokens: Int { patchCount + prefixTokens }
    /// Elements of one patch as the im2col GEMM sees it, `(c, ky, kx)` order.
    public var patchElements: Int { inChannels * patchSize * patchSize }
    /// `norm` for token pooling, `fc_norm` for average pooling.
    public var finalNormName: String { pooling == .token ? "norm" : "fc_norm" }

    /// Whether timm itself could build this model: every block has the same widths, `qkDim == vDim`, the width
    /// splits evenly, and the scale is timm's `head_dim^-0.5`.
    public var isPlainTimm: Bool {
        guard let first = blocks.first else { return false }
        return blocks.allSatisfy { $0 == first } && first.qkDim == first.vDim
            && first.attentionScale == 1 / Double(first.qkDim).squareRoot()
    }

    /// Every reason this configuration cannot describe a model, as one sentence (nil when it can).
    public func problem() -> String? {
        if !Self.readableVersions.contains(version) {
            return "version \(version) (this build reads \(Self.readableVersions.lowerBound)–\(Self.readableVersions.upperBound))"
        }
        if imageSize < 1 || patchSize < 1 || inChannels < 1 || classes < 1 || residualWidth < 1 {
            return "image size, patch size, input channels, classes and residual width must be positive"
        }
        // Bounds far above any real ViT (ViT-22B: width 6144, MLP 24576) that keep every shape, parameter and MAC
        // product inside Int, so a hostile header declaring zero-byte tensors of huge shape cannot trap a count.
        if imageSize > Self.maximumSide || patchSize > Self.maximumSide || inChannels > Self.maximumSide {
            return "image size, patch size and input channels must be at most \(Self.maximumSide)"
        }
        if patchElements > Self.maximumWidth || patchCount > Self.maximumWidth {
            return "patches of \(patchElements) elements, \(patchCount) per image: above the limit \(Self.maximumWidth)"
        }
        if residualWidth > Self.maximumWidth || classes > Self.maximumWidth || blocks.count > Self.maximumDepth {
            return "residual width, classes (at most \(Self.maximumWidth)) or depth (at most \(Self.maximumDepth)) too large"
        }
        if imageSize % patchSize != 0 { return "image size \(imageSize) is not a multiple of patch size \(patchSize)" }
        if blocks.isEmpty { return "no blocks" }
        if pooling == .token && !classToken { return "token pooling needs a class token" }
        if distillationToken && (!classToken || pooling != .token) {
            return "a distillation token needs a class token and token pooling (DeiT)"
        }
        if !(layerNormEps > 0) || !layerNormEps.isFinite { return "LayerNorm eps must be positive" }
        if let classIds, classIds.count != classes || Set(classIds).count != classes || classIds.contains(where: { $0 < 0 }) {
            return "classIds must name \(classes) distinct non-negative classes, one per output"
        }
        if let classNames, classNames.count != classes || Set(classNames).count != classes {
            return "classNames must name \(classes) distinct classes, one per output"
        }
        if let preprocessing, let problem = preprocessing.problem(channels: inChannels) { return problem }
        if let heldOut, !(heldOut.fraction > 0 && heldOut.fraction < 1) {
            return "heldOut.fraction must be in (0, 1)"
        }
        if let problem = tokenSetProblem() { return problem }
        for (index, block) in blocks.enumerated() {
            // A block may lose all its heads (its attention then adds only proj's bias), never its MLP.
            if block.heads == 0 && (block.qkDim != 0 || block.vDim != 0 || !block.hasUniformHeads) {
                return "block \(index): a block without heads has qkDim and vDim 0"
            }
            if block.heads < 0 || (block.heads > 0 && (block.qkDim < 1 || block.vDim < 1)) || block.mlpHidden < 1 {
                return "block \(index): heads must be ≥ 0, and qkDim, vDim (with heads) and mlpHidden at least 1 "
                    + "(a method that empties an MLP removes the block)"
            }
            if block.heads > Self.maximumWidth || block.qkDim > Self.maximumWidth || block.vDim > Self.maximumWidth
                || block.qkvRows > Self.maximumWidth * 4 || block.mlpHidden > Self.maximumWidth * 4 {
                return "block \(index): widths above ViTForge's limits"
            }
            if !(block.attentionScale > 0) || !block.attentionScale.isFinite {
                return "block \(index): attention scale must be positive and finite"
            }
            if !block.hasUniformHeads {
                let qk = block.qkDims, v = block.vDims
                guard let headQK = block.headQKDims, let headV = block.headVDims, headQK.count == block.heads,
                      headV.count == block.heads else {
                    return "block \(index): per-head widths must give every one of its \(block.heads) heads a q/k and a v width"
                }
                if qk.contains(where: { $0 < 1 }) || v.contains(where: { $0 < 1 }) {
                    return "block \(index): every head needs at least one q/k and one v dim (a head without dims is removed)"
                }
                if qk.max() != block.qkDim || v.max() != block.vDim {
                    return "block \(index): qkDim and vDim must be the widest head's (\(qk.max() ?? 0), \(v.max() ?? 0))"
                }
            }
        }
        // Each width within its limit can still multiply into more weights than any machine holds (a config of
        // 1024 blocks of the widest MLP asks for 10^14 floats); `train --config` would allocate them all.
        if parameterCount > Self.maximumParameters {
            return "\(parameterCount) parameters: above ViTForge's limit of \(Self.maximumParameters)"
        }
        return nil
    }

    // MARK: JSON

    /// The JSON text stored under `vitforge.config` (keys sorted, so equal configs give equal files).
    public func jsonString() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain structs of numbers, strings and booleans cannot fail; the fallback keeps this total.
        // A config read from an older file and changed is written in the current scheme.
        var current = self
        current.version = writtenVersion
        guard let data = try? encoder.encode(current), let text = String(data: data, encoding: .utf8) else { return "{}" }
        return text
    }

    /// Parses and checks a `vitforge.config` string; `file` names the model file in errors.
    public static func fromJSON(_ text: String, file: String) throws -> ViTConfig {
        let config: ViTConfig
        do {
            config = try JSONDecoder().decode(ViTConfig.self, from: Data(text.utf8))
        } catch let DecodingError.keyNotFound(key, context) {
            throw ModelFileError(file: file, .invalidConfig(
                "\(metadataKey) has no \"\(key.stringValue)\"\(codingPathText(context.codingPath))"))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw ModelFileError(file: file, .invalidConfig(
                "\(metadataKey): wrong type\(codingPathText(context.codingPath))"))
        } catch let DecodingError.dataCorrupted(context) {
            throw ModelFileError(file: file, .invalidConfig(
                "\(metadataKey) is not valid: \(context.debugDescription)\(codingPathText(context.codingPath))"))
        } catch {
            throw ModelFileError(file: file, .invalidConfig("\(metadataKey) cannot be read"))
        }
        if let problem = config.problem() { throw ModelFileError(file: file, .invalidConfig(problem)) }
        return config
    }

    private static func codingPathText(_ path: [CodingKey]) -> String {
        path.isEmpty ? "" : " at " + path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    // `version` has a default, so configs written by hand may leave it out.
    private enum CodingKeys: String, CodingKey {
        case version, imageSize, patchSize, inChannels, classes, residualWidth, blocks, qkvBias, pooling
        case classToken, distillationToken, layerNormEps, classIds, classNames, preprocessing, heldOut, tokenSets
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decodeIfPresent(Int.self, forKey: .version) ?? Self.currentVersion
        imageSize = try container.decode(Int.self, forKey: .imageSize)
        patchSize = try container.decode(Int.self, forKey: .patchSize)
        inChannels = try container.decode(Int.self, forKey: .inChannels)
        classes = try container.decode(Int.self, forKey: .classes)
        residualWidth = try container.decode(Int.self, forKey: .residualWidth)
        blocks = try container.decode([BlockConfig].self, forKey: .blocks)
        qkvBias = try container.decode(Bool.self, forKey: .qkvBias)
        pooling = try container.decode(Pooling.self, forKey: .pooling)
        classToken = try container.decode(Bool.self, forKey: .classToken)
        distillationToken = try container.decodeIfPresent(Bool.self, forKey: .distillationToken) ?? false
        layerNormEps = try container.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? 1e-6
        classIds = try container.decodeIfPresent([Int].self, forKey: .classIds)
        classNames = try container.decodeIfPresent([String].self, forKey: .classNames)
        preprocessing = try container.decodeIfPresent(InputPreprocessing.self, forKey: .preprocessing)
        heldOut = try container.decodeIfPresent(HeldOutSplit.self, forKey: .heldOut)
        tokenSets = try container.decodeIfPresent([[Int]].self, forKey: .tokenSets)
    }

    /// The data set's class that output `k` predicts.
    public func classId(ofOutput k: Int) -> Int { classIds?[k] ?? k }
}

extension QKVLayout {
    /// The layout of a block's fused qkv projection.
    public init(_ block: BlockConfig) {
        self.init(qkDims: block.qkDims, vDims: block.vDims)
    }
}
