/// Where a loaded model's head counts came from (`vitforge info` reports it, since a guessed count changes the model).
public enum HeadsSource: String, Equatable, Sendable {
    /// The full configuration stored under `vitforge.config`.
    case metadata
    /// The caller's `heads:` (`--heads`).
    case argument
    /// The standard timm/DeiT head count for the embedding width (`ViTConfig.knownHeads`).
    case knownWidth
    /// `num_attention_heads` in a Hugging Face checkpoint's `config.json`.
    case huggingFaceConfig
}

extension ViTConfig {
    /// Head counts of the standard timm/DeiT widths (all with 64-wide heads): Ti 192, S 384, B 768, L 1024, H 1280.
    /// A non-standard model with one of these widths needs `--heads`, or its shapes will be read wrongly.
    public static let knownHeads: [Int: Int] = [192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16]

    /// The configuration of a safetensors model: the stored `vitforge.config` when there is one, otherwise inferred
    /// from the shapes of a plain timm state dict. Heads come from `heads` (the `--heads` flag) first, then the
    /// stored configuration, then `knownHeads`; if none applies the error says to pass `--heads`.
    ///
    /// Inference reads shapes only; `ViTWeights` then checks every tensor against the result. A timm model pruned
    /// elsewhere (Torch-Pruning) may have different widths per block; they are read per block, with the scale
    /// recomputed from the pruned head dim because the original one is not in the file.
    public static func infer(from file: SafetensorsFile, heads: Int? = nil) throws
        -> (config: ViTConfig, headsSource: HeadsSource) {
        let path = file.path
        if let heads, heads < 1 || heads > maximumWidth {
            throw ModelFileError(file: path, .invalidConfig("--heads must be between 1 and \(maximumWidth)"))
        }
        try refuseUnsupportedVariants(file)

        if let stored = file.metadata[metadataKey] {
            let config = try fromJSON(stored, file: path)
            if let heads, config.blocks.contains(where: { $0.heads != heads }) {
                throw ModelFileError(file: path, key: metadataKey, .invalidConfig(
                    "--heads \(heads) contradicts the stored per-block heads \(config.blocks.map(\.heads))"))
            }
            return (config, .metadata)
        }

        func shape(_ name: String, rank: Int) throws -> [Int] {
            let found = try file.shape(name)
            guard found.count == rank else {
                throw ModelFileError(file: path, key: name, .invalidEntry("rank \(found.count) where \(rank) expected"))
            }
            // Bounded before any arithmetic; `problem()` applies the model's own limits afterwards.
            guard found.allSatisfy({ $0 <= maximumWidth * 4 }) else {
                throw ModelFileError(file: path, key: name, .invalidConfig("shape \(found) is beyond ViTForge's limits"))
            }
            return found
        }

        let patchWeight = try shape("patch_embed.proj.weight", rank: 4)  // [D, C, P, P]
        let residualWidth = patchWeight[0], inChannels = patchWeight[1], patchSize = patchWeight[2]
        guard patchWeight[3] == patchSize else {
            throw ModelFileError(file: path, key: "patch_embed.proj.weight",
                                 .unsupportedVariant("non-square patches \(patchWeight[2])×\(patchWeight[3])"))
        }
        let classToken = file.contains("cls_token")
        let distillationToken = file.contains("dist_token")
        let prefixTokens = (classToken ? 1 : 0) + (distillationToken ? 1 : 0)

        let positions = try shape("pos_embed", rank: 3)[1]  // [1, prefix + patches, D]
        let patchCount = positions - prefixTokens
        let gridSize = integerSquareRoot(max(patchCount, 0))
        guard patchCount > 0, gridSize * gridSize == patchCount else {
            if prefixTokens > 0, integerSquareRoot(positions) * integerSquareRoot(positions) == positions {
                throw ModelFileError(file: path, key: "pos_embed", .unsupportedVariant(
                    "pos_embed has no positions for the prefix tokens (timm no_embed_class=True, DeiT-3 style)"))
            }
            throw ModelFileError(file: path, key: "pos_embed", .invalidConfig(
                "\(positions) positions are not a square patch grid plus \(prefixTokens) prefix token(s)"))
        }

        let blockIndices = file.names.compactMap(blockIndex(of:))
        guard let lastBlock = blockIndices.max() else {
            throw ModelFileError(file: path, key: "blocks.0.attn.qkv.weight", .missingKey)
        }

        let pooling: Pooling
        if file.contains("fc_norm.weight") {
            pooling = .avg
        } else if classToken {
            pooling = .token
        } else {
            throw ModelFileError(file: path, .unsupportedVariant(
                "average pooling without fc_norm (timm fc_norm=False); only timm's default pairing is implemented"))
        }

        let classes = try shape("head.weight", rank: 2)[0]  // [C, D]

        let headCount: Int
        let source: HeadsSource
        if let heads {
            (headCount, source) = (heads, .argument)
        } else if let known = knownHeads[residualWidth] {
            (headCount, source) = (known, .knownWidth)
        } else {
            throw ModelFileError(file: path, .headsUnknown(embedDim: residualWidth))
        }

        var blocks: [BlockConfig] = []
        for index in 0...lastBlock {
            let qkvName = "blocks.\(index).attn.qkv.weight"
            let qkvRows = try shape(qkvName, rank: 2)[0]  // [3 · heads · headDim, D]
            guard qkvRows % (3 * headCount) == 0 else {
                throw ModelFileError(file: path, key: qkvName, .invalidConfig(
                    "\(qkvRows) rows do not split into q, k and v of \(headCount) equal heads; pass the right --heads"))
            }
            let headDim = qkvRows / (3 * headCount)
            let mlpHidden = try shape("blocks.\(index).mlp.fc1.weight", rank: 2)[0]  // [M, D]
            blocks.append(BlockConfig(heads: headCount, qkDim: headDim, vDim: headDim, mlpHidden: mlpHidden))
        }

        let config = ViTConfig(imageSize: gridSize * patchSize, patchSize: patchSize, inChannels: inChannels,
                               classes: classes, residualWidth: residualWidth, blocks: blocks,
                               qkvBias: file.contains("blocks.0.attn.qkv.bias"), pooling: pooling,
                               classToken: classToken, distillationToken: distillationToken)
        if let problem = config.problem() { throw ModelFileError(file: path, .invalidConfig(problem)) }
        return (config, source)
    }

    /// Names the first tensor that belongs to a layout or variant ViTForge does not implement, rather than letting
    /// it surface later as a puzzling missing or unexpected key.
    static func refuseUnsupportedVariants(_ file: SafetensorsFile) throws {
        // (name fragment, how it matches, what it means)
        let variants: [(fragment: String, prefix: Bool, meaning: String)] = [
            ("module.", true, "keys start with \"module.\" (a DataParallel wrapper); strip the prefix when converting"),
            ("_orig_mod.", true, "keys start with \"_orig_mod.\" (torch.compile); strip the prefix when converting"),
            ("vit.", true, "Hugging Face transformers layout without its ViTForImageClassification keys (vit.embeddings.patch_embeddings…)"),
            ("deit.", true, "Hugging Face transformers layout (deit.encoder.layer…); convert to timm key names"),
            ("encoder.layer.", false, "Hugging Face transformers layout (encoder.layer…); convert to timm key names"),
            ("reg_token", false, "register tokens (reg_token)"),
            (".ls1.", false, "LayerScale (ls1.gamma, timm init_values / DeiT-3)"),
            (".ls2.", false, "LayerScale (ls2.gamma, timm init_values / DeiT-3)"),
            (".q_norm.", false, "q/k normalisation (q_norm, timm qk_norm=True)"),
            (".k_norm.", false, "q/k normalisation (k_norm, timm qk_norm=True)"),
            ("norm_pre.", true, "pre-norm (norm_pre, CLIP-style pre_norm=True)"),
            (".attn.norm.", false, "attention scale-norm (attn.norm, timm scale_attn_norm)"),
            (".mlp.norm.", false, "MLP scale-norm (mlp.norm, timm scale_mlp_norm)"),
            (".mlp.fc1_g.", false, "gated MLP (SwiGLU)"),
            (".attn.q.", false, "separate q/k/v projections (non-fused attention)"),
            ("attn_pool.", true, "attention pooling (attn_pool, timm global_pool='map')"),
            ("pre_logits.", true, "a pre-logits layer (pre_logits, in21k representation_size)"),
            ("patch_embed.norm.", true, "a patch-embedding norm"),
            ("patch_embed.backbone.", true, "a hybrid CNN stem"),
        ]
        for name in file.names {
            for variant in variants where variant.prefix ? name.hasPrefix(variant.fragment)
                : name.contains(variant.fragment) {
                throw ModelFileError(file: file.path, key: name, .unsupportedVariant(variant.meaning))
            }
        }
    }
}

/// `i` for a key `blocks.i.…`, else nil.
func blockIndex(of name: String) -> Int? {
    guard name.hasPrefix("blocks.") else { return nil }
    let rest = name.dropFirst("blocks.".count)
    guard let dot = rest.firstIndex(of: ".") else { return nil }
    let digits = rest[rest.startIndex..<dot]
    guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
    return Int(digits)
}

func integerSquareRoot(_ value: Int) -> Int {
    guard value > 0 else { return 0 }
    var root = Int(Double(value).squareRoot())
    while root * root > value { root -= 1 }
    while (root + 1) * (root + 1) <= value { root += 1 }
    return root
}
