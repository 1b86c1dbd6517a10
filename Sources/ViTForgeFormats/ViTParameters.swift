/// One parameter tensor of a ViT: its timm state-dict name and its shape.
public struct ParameterSpec: Equatable, Sendable {
    public var name: String
    public var shape: [Int]

    public var elementCount: Int { shape.reduce(1, *) }
}

extension ViTConfig {
    /// Every parameter in timm's state-dict order, named exactly as timm names it. The fused `attn.qkv` rows are
    /// q (heads·qkDim), then k (heads·qkDim), then v (heads·vDim), each head-major (REFERENCE.md §3.3); with
    /// `qkDim == vDim` that is timm's `[3·A, D]`, otherwise it is ViTForge's extension of the same layout.
    public func parameterSpecs() -> [ParameterSpec] {
        let width = residualWidth
        var specs: [ParameterSpec] = []
        func add(_ name: String, _ shape: [Int]) { specs.append(ParameterSpec(name: name, shape: shape)) }
        if classToken { add("cls_token", [1, 1, width]) }
        if distillationToken { add("dist_token", [1, 1, width]) }
        add("pos_embed", [1, tokens, width])
        add("patch_embed.proj.weight", [width, inChannels, patchSize, patchSize])
        add("patch_embed.proj.bias", [width])
        for (index, block) in blocks.enumerated() {
            let prefix = "blocks.\(index)."
            add(prefix + "norm1.weight", [width])
            add(prefix + "norm1.bias", [width])
            add(prefix + "attn.qkv.weight", [block.qkvRows, width])
            if qkvBias { add(prefix + "attn.qkv.bias", [block.qkvRows]) }
            add(prefix + "attn.proj.weight", [width, block.attentionWidth])
            add(prefix + "attn.proj.bias", [width])
            add(prefix + "norm2.weight", [width])
            add(prefix + "norm2.bias", [width])
            add(prefix + "mlp.fc1.weight", [block.mlpHidden, width])
            add(prefix + "mlp.fc1.bias", [block.mlpHidden])
            add(prefix + "mlp.fc2.weight", [width, block.mlpHidden])
            add(prefix + "mlp.fc2.bias", [width])
        }
        add(finalNormName + ".weight", [width])
        add(finalNormName + ".bias", [width])
        add("head.weight", [classes, width])
        add("head.bias", [classes])
        if distillationToken {
            add("head_dist.weight", [classes, width])
            add("head_dist.bias", [classes])
        }
        return specs
    }

    /// Number of trainable scalars (what `sum(p.numel() for p in model.parameters())` gives in PyTorch).
    public var parameterCount: Int { parameterSpecs().reduce(0) { $0 + $1.elementCount } }
}

/// A parameter's values on the host, row-major float32.
public struct HostTensor: Equatable, Sendable {
    public var shape: [Int]
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        self.shape = shape
        self.values = values
    }
}

/// A model's parameters on the host, keyed by timm name and checked against the configuration: every parameter the
/// configuration needs is present with its shape, and nothing else is. This is what is read from and written to
/// safetensors; the device-side model uploads it.
///
/// Metadata policy: `save` always writes the full configuration under `vitforge.config`. It costs a few hundred bytes,
/// makes the file self-describing (heads cannot be read from shapes; the attention scale survives pruning), and
/// timm, HF and `safetensors` ignore metadata they do not know, so a file of timm shapes still loads in timm.
public struct ViTWeights: Equatable, Sendable {
    public private(set) var config: ViTConfig
    public private(set) var tensors: [String: HostTensor]
    /// The file these weights were read from, if any; `save` refuses to write over it.
    public internal(set) var sourcePath: String?
    /// Where the head counts came from, for weights read from a file.
    public internal(set) var headsSource: HeadsSource?

    /// Weights built in memory (initialisation, pruning surgery). Shapes are checked like a file's.
    public init(config: ViTConfig, tensors: [String: HostTensor]) throws {
        if let problem = config.problem() {
            throw ModelFileError(file: ModelFileError.inMemory, .invalidConfig(problem))
        }
        for spec in config.parameterSpecs() {
            guard let tensor = tensors[spec.name] else {
                throw ModelFileError(file: ModelFileError.inMemory, key: spec.name, .missingKey)
            }
            guard tensor.shape == spec.shape else {
                throw ModelFileError(file: ModelFileError.inMemory, key: spec.name,
                                     .wrongShape(expected: spec.shape, actual: tensor.shape))
            }
            guard tensor.values.count == spec.elementCount else {
                throw ModelFileError(file: ModelFileError.inMemory, key: spec.name, .invalidTensor(
                    "\(tensor.values.count) values for shape \(spec.shape)"))
            }
        }
        let expected = Set(config.parameterSpecs().map(\.name))
        if let extra = tensors.keys.sorted().first(where: { !expected.contains($0) }) {
            throw ModelFileError(file: ModelFileError.inMemory, key: extra, .unexpectedKey)
        }
        self.config = config
        self.tensors = tensors
    }

    /// Reads a model file: configuration from `vitforge.config` or inferred (see `ViTConfig.infer`), then every
    /// parameter checked and converted to float32. A Hugging Face `ViTForImageClassification` file (with its
    /// `config.json` beside it) is read by key layout and renamed to timm names (`HuggingFaceViT`). `allowExtraTensors` lets a checkpoint carry other tensors
    /// (optimizer moments); they are ignored rather than reported as unexpected.
    public static func load(path: String, heads: Int? = nil, allowExtraTensors: Bool = false) throws -> ViTWeights {
        try ViTWeights(file: SafetensorsFile(path: ModelPath.resolve(path)), heads: heads,
                       allowExtraTensors: allowExtraTensors)
    }

    public init(file: SafetensorsFile, heads: Int? = nil, allowExtraTensors: Bool = false) throws {
        if HuggingFaceViT.isLayout(file) {
            (config, tensors) = try HuggingFaceViT.read(file, heads: heads, allowExtraTensors: allowExtraTensors)
            sourcePath = file.path
            headsSource = .huggingFaceConfig
            return
        }
        let (config, source) = try ViTConfig.infer(from: file, heads: heads)
        let specs = config.parameterSpecs()
        var tensors: [String: HostTensor] = [:]
        for spec in specs {
            guard let entry = file.entry(spec.name) else {
                throw ModelFileError(file: file.path, key: spec.name, .missingKey)
            }
            guard entry.shape == spec.shape else {
                throw ModelFileError(file: file.path, key: spec.name,
                                     .wrongShape(expected: spec.shape, actual: entry.shape))
            }
            tensors[spec.name] = HostTensor(shape: spec.shape, values: try file.floats(spec.name))
        }
        if !allowExtraTensors {
            let expected = Set(specs.map(\.name))
            if let extra = file.names.first(where: { !expected.contains($0) }) {
                throw ModelFileError(file: file.path, key: extra, .unexpectedKey)
            }
        }
        self.config = config
        self.tensors = tensors
        self.sourcePath = file.path
        self.headsSource = source
    }

    public subscript(name: String) -> HostTensor? { tensors[name] }

    /// Replaces a parameter's values, keeping its shape (an optimizer step, a test perturbation).
    public mutating func setValues(_ name: String, _ values: [Float]) throws {
        guard let tensor = tensors[name] else {
            throw ModelFileError(file: sourcePath ?? ModelFileError.inMemory, key: name, .missingKey)
        }
        guard values.count == tensor.values.count else {
            throw ModelFileError(file: sourcePath ?? ModelFileError.inMemory, key: name,
                                 .invalidTensor("\(values.count) values for shape \(tensor.shape)"))
        }
        tensors[name]?.values = values
    }

    /// Records how images become this model's input (`ViTConfig.preprocessing`), checked against its channels.
    public mutating func setPreprocessing(_ preprocessing: InputPreprocessing?) throws {
        var changed = config
        changed.preprocessing = preprocessing
        if let problem = changed.problem() { throw ModelFileError(file: sourcePath ?? "model", .invalidConfig(problem)) }
        config = changed
    }

    /// Records which data-set class each output predicts (`ViTConfig.classIds`): one distinct id per output.
    public mutating func setClassIds(_ ids: [Int]?) throws {
        var changed = config
        changed.classIds = ids
        if let problem = changed.problem() { throw ModelFileError(file: sourcePath ?? "model", .invalidConfig(problem)) }
        config = changed
    }

    /// Records the per-block token sets of static token pruning (`ViTConfig.tokenSets`, checked; nil: none).
    public mutating func setTokenSets(_ sets: [[Int]]?) throws {
        var changed = config
        changed.tokenSets = sets
        if let problem = changed.problem() { throw ModelFileError(file: sourcePath ?? "model", .invalidConfig(problem)) }
        config = changed
    }

    /// The tensors in timm state-dict order, ready for `SafetensorsWriter`.
    public func namedTensors() -> [NamedTensor] {
        config.parameterSpecs().compactMap { spec in
            tensors[spec.name].map { NamedTensor(name: spec.name, shape: $0.shape, floats: $0.values) }
        }
    }

    /// Writes the weights as safetensors (float32, timm names) with the configuration in `vitforge.config` and the
    /// caller's `metadata` beside it; atomic, and never over `sourcePath`.
    public func save(to path: String, metadata: [String: String] = [:]) throws {
        var fullMetadata = metadata
        fullMetadata[ViTConfig.metadataKey] = config.jsonString()
        try SafetensorsWriter.write(namedTensors(), metadata: fullMetadata, to: path,
                                    protecting: sourcePath.map { [$0] } ?? [])
    }

    /// Equal configuration and values; where the weights came from does not matter.
    public static func == (lhs: ViTWeights, rhs: ViTWeights) -> Bool {
        lhs.config == rhs.config && lhs.tensors == rhs.tensors
    }
}
