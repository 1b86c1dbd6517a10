import Foundation

/// Reads Hugging Face `ViTForImageClassification` checkpoints (the Hub's `model.safetensors` with `config.json`
/// beside it) as timm-named weights, so every command that takes `--model` accepts them. Detected by key layout;
/// models ViTForge writes always use timm names.
///
/// The layout, per block N under `vit.encoder.layer.N.`: `layernorm_before` (timm `norm1`), separate
/// `attention.attention.query|key|value` projections (fused here into `attn.qkv` as q rows, k rows, v rows, each
/// head-major, which is how both libraries split heads), `attention.output.dense` (`attn.proj`), `layernorm_after`
/// (`norm2`), `intermediate.dense` (`mlp.fc1`), `output.dense` (`mlp.fc2`); then `vit.layernorm` (`norm`, the
/// class token read after it) and `classifier` (`head`). The head count and LayerNorm eps are not in the shapes:
/// they come from `config.json` (HF's eps default is 1e-12, not timm's 1e-6).
enum HuggingFaceViT {
    /// The key that marks the layout.
    static let marker = "vit.embeddings.patch_embeddings.projection.weight"

    static func isLayout(_ file: SafetensorsFile) -> Bool { file.contains(marker) }

    /// The facts of `config.json` this reader uses.
    struct Settings {
        var heads: Int
        var layerNormEps: Double
        var qkvBias: Bool
        /// `id2label` in index order; nil when absent, incomplete, or HF's placeholders `LABEL_0`, `LABEL_1`, ...
        /// (what `transformers` writes for a model nobody named), which name nothing.
        var classNames: [String]?
    }

    /// `id2label` ({"0": "tench", ...}) as names by index, under the rules of `Settings.classNames`.
    static func classNames(id2label: Any?) -> [String]? {
        guard let table = id2label as? [String: Any], !table.isEmpty else { return nil }
        var names: [String] = []
        for index in 0 ..< table.count {
            guard let name = table[String(index)] as? String else { return nil }
            names.append(name)
        }
        let placeholders = names.indices.allSatisfy { names[$0] == "LABEL_\($0)" }
        return placeholders || Set(names).count != names.count ? nil : names
    }

    /// `config.json` in the model file's folder.
    static func configPath(for modelPath: String) -> String {
        ((modelPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("config.json")
    }

    static func readSettings(modelPath: String) throws -> Settings {
        let path = configPath(for: modelPath)
        func invalid(_ message: String) -> ModelFileError { ModelFileError(file: path, .invalidConfig(message)) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ModelFileError(file: modelPath, .invalidConfig(
                "Hugging Face layout needs its config.json beside it (\(path): \(SafetensorsFile.ioMessage(error)))"))
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw invalid("not a JSON object")
        }
        if let type = object["model_type"] as? String, type != "vit" {
            throw ModelFileError(file: path, .unsupportedVariant("model_type \"\(type)\" (only \"vit\" is read)"))
        }
        // JSON numbers arrive as NSNumber; a Bool also bridges to a number, so booleans are checked by type.
        func integer(_ key: String) throws -> Int {
            guard let number = object[key] as? NSNumber, !(object[key] is Bool),
                  let value = Int(exactly: number.doubleValue) else {
                throw invalid("\"\(key)\" is missing or not an integer")
            }
            return value
        }
        let heads = try integer("num_attention_heads")
        guard heads >= 1, heads <= ViTConfig.maximumWidth else { throw invalid("num_attention_heads \(heads)") }
        var eps = 1e-12
        if let value = object["layer_norm_eps"] {
            guard let number = value as? NSNumber, !(value is Bool), number.doubleValue > 0 else {
                throw invalid("\"layer_norm_eps\" is not a positive number")
            }
            eps = number.doubleValue
        }
        // ViTForge's GELU is the exact erf one, HF's "gelu"; the tanh approximations would change the logits.
        let activation = object["hidden_act"] as? String ?? "gelu"
        guard activation == "gelu" else {
            throw ModelFileError(file: path, .unsupportedVariant("hidden_act \"\(activation)\" (only exact \"gelu\")"))
        }
        if object["use_mask_token"] as? Bool == true {
            throw ModelFileError(file: path, .unsupportedVariant("use_mask_token (masked image modelling)"))
        }
        let qkvBias = object["qkv_bias"] as? Bool ?? true
        return Settings(heads: heads, layerNormEps: eps, qkvBias: qkvBias,
                        classNames: classNames(id2label: object["id2label"]))
    }

    /// The configuration and timm-named tensors of an HF-layout file. `heads` (`--heads`) must agree with
    /// `config.json` when given.
    static func read(_ file: SafetensorsFile, heads: Int?, allowExtraTensors: Bool) throws
        -> (config: ViTConfig, tensors: [String: HostTensor]) {
        let path = file.path
        let settings = try readSettings(modelPath: path)
        if let heads, heads != settings.heads {
            throw ModelFileError(file: path, .invalidConfig(
                "--heads \(heads) contradicts num_attention_heads \(settings.heads) in \(configPath(for: path))"))
        }
        var used = Set<String>()
        func tensor(_ name: String, rank: Int) throws -> HostTensor {
            let shape = try file.shape(name)
            guard shape.count == rank else {
                throw ModelFileError(file: path, key: name, .invalidEntry("rank \(shape.count) where \(rank) expected"))
            }
            guard shape.allSatisfy({ $0 <= ViTConfig.maximumWidth * 4 }) else {
                throw ModelFileError(file: path, key: name, .invalidConfig("shape \(shape) is beyond ViTForge's limits"))
            }
            used.insert(name)
            return HostTensor(shape: shape, values: try file.floats(name))
        }

        var tensors: [String: HostTensor] = [:]
        let embeddings = "vit.embeddings."
        let patch = try tensor(embeddings + "patch_embeddings.projection.weight", rank: 4)  // [D, C, P, P]
        let width = patch.shape[0], inChannels = patch.shape[1], patchSize = patch.shape[2]
        guard patch.shape[3] == patchSize, patchSize >= 1 else {
            throw ModelFileError(file: path, key: marker, .unsupportedVariant("non-square patches \(patch.shape)"))
        }
        tensors["patch_embed.proj.weight"] = patch
        tensors["patch_embed.proj.bias"] = try tensor(embeddings + "patch_embeddings.projection.bias", rank: 1)
        tensors["cls_token"] = try tensor(embeddings + "cls_token", rank: 3)
        let positions = try tensor(embeddings + "position_embeddings", rank: 3)  // [1, 1 + patches, D]
        tensors["pos_embed"] = positions
        let patchCount = positions.shape[1] - 1
        let grid = integerSquareRoot(max(patchCount, 0))
        guard patchCount > 0, grid * grid == patchCount else {
            throw ModelFileError(file: path, key: embeddings + "position_embeddings", .invalidConfig(
                "\(positions.shape[1]) positions are not a square patch grid plus the class token"))
        }

        let layerPrefix = "vit.encoder.layer."
        let layerIndices = Set(file.names.compactMap { name -> Int? in
            guard name.hasPrefix(layerPrefix) else { return nil }
            let rest = name.dropFirst(layerPrefix.count)
            guard let dot = rest.firstIndex(of: "."), let index = Int(rest[rest.startIndex..<dot]), index >= 0
            else { return nil }
            return index
        })
        guard let lastLayer = layerIndices.max() else {
            throw ModelFileError(file: path, key: layerPrefix + "0.attention.attention.query.weight", .missingKey)
        }
        guard lastLayer < ViTConfig.maximumDepth else {
            throw ModelFileError(file: path, .invalidConfig("layer \(lastLayer) is beyond ViTForge's depth limit"))
        }

        var blocks: [BlockConfig] = []
        for index in 0...lastLayer {
            let hf = layerPrefix + "\(index).", timm = "blocks.\(index)."
            let attention = hf + "attention.attention."
            let q = try tensor(attention + "query.weight", rank: 2)  // [A, D]
            let k = try tensor(attention + "key.weight", rank: 2)
            let v = try tensor(attention + "value.weight", rank: 2)
            guard k.shape == q.shape, v.shape == q.shape, q.shape[0] % settings.heads == 0 else {
                throw ModelFileError(file: path, key: attention + "query.weight", .invalidConfig(
                    "query/key/value of shapes \(q.shape), \(k.shape), \(v.shape) do not split into "
                    + "\(settings.heads) equal heads (num_attention_heads in config.json)"))
            }
            let rows = q.shape[0]
            tensors[timm + "attn.qkv.weight"] = HostTensor(shape: [3 * rows, q.shape[1]],
                                                          values: q.values + k.values + v.values)
            if settings.qkvBias {
                let biases = try ["query", "key", "value"].map { try tensor(attention + $0 + ".bias", rank: 1) }
                tensors[timm + "attn.qkv.bias"] = HostTensor(shape: [3 * rows], values: biases.flatMap(\.values))
            }
            let pairs = [("attention.output.dense", "attn.proj"), ("layernorm_before", "norm1"),
                         ("layernorm_after", "norm2"), ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2")]
            for (hfName, timmName) in pairs {
                tensors[timm + timmName + ".weight"] = try tensor(hf + hfName + ".weight",
                                                                 rank: hfName.hasPrefix("layernorm") ? 1 : 2)
                tensors[timm + timmName + ".bias"] = try tensor(hf + hfName + ".bias", rank: 1)
            }
            let headDim = rows / settings.heads
            blocks.append(BlockConfig(heads: settings.heads, qkDim: headDim, vDim: headDim,
                                      mlpHidden: tensors[timm + "mlp.fc1.weight"]?.shape[0] ?? 0))
        }
        tensors["norm.weight"] = try tensor("vit.layernorm.weight", rank: 1)
        tensors["norm.bias"] = try tensor("vit.layernorm.bias", rank: 1)
        let head = try tensor("classifier.weight", rank: 2)  // [C, D]
        tensors["head.weight"] = head
        tensors["head.bias"] = try tensor("classifier.bias", rank: 1)

        if !allowExtraTensors, let extra = file.names.first(where: { !used.contains($0) }) {
            throw ModelFileError(file: path, key: extra, .unexpectedKey)
        }
        var config = ViTConfig(imageSize: grid * patchSize, patchSize: patchSize, inChannels: inChannels,
                               classes: head.shape[0], residualWidth: width, blocks: blocks,
                               qkvBias: settings.qkvBias, pooling: .token, classToken: true,
                               layerNormEps: settings.layerNormEps)
        // Names for another number of classes than the classifier has describe some other model: left out.
        if let names = settings.classNames, names.count == config.classes { config.classNames = names }
        if let problem = config.problem() { throw ModelFileError(file: path, .invalidConfig(problem)) }
        // Every converted tensor against the shape the configuration needs, naming the HF key it came from.
        for spec in config.parameterSpecs() {
            guard let found = tensors[spec.name] else {
                throw ModelFileError(file: path, key: spec.name, .missingKey)
            }
            guard found.shape == spec.shape else {
                throw ModelFileError(file: path, key: hfName(of: spec.name),
                                     .wrongShape(expected: spec.shape, actual: found.shape))
            }
        }
        return (config, tensors)
    }

    /// The HF key a timm name was read from (for errors; the fused qkv names its query part).
    static func hfName(of timmName: String) -> String {
        let fixed = ["cls_token": "vit.embeddings.cls_token", "pos_embed": "vit.embeddings.position_embeddings",
                     "patch_embed.proj.weight": marker,
                     "patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
                     "norm.weight": "vit.layernorm.weight", "norm.bias": "vit.layernorm.bias",
                     "head.weight": "classifier.weight", "head.bias": "classifier.bias"]
        if let name = fixed[timmName] { return name }
        guard let index = blockIndex(of: timmName) else { return timmName }
        let rest = timmName.dropFirst("blocks.\(index).".count)
        let parts: [String: String] = [
            "norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
            "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense", "attn.qkv": "attention.attention.query"]
        for (timmPart, hfPart) in parts where rest.hasPrefix(timmPart + ".") {
            return "vit.encoder.layer.\(index).\(hfPart)" + rest.dropFirst(timmPart.count)
        }
        return timmName
    }
}
