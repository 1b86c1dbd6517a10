import ViTForgeRandom

extension ViTWeights {
    /// Changes what the configuration says about the model without changing its parameters (class names, the
    /// held-out split, preprocessing); a change of any parameter's shape is refused.
    public mutating func describe(_ change: (inout ViTConfig) -> Void) throws {
        var changed = config
        change(&changed)
        if let problem = changed.problem() { throw ModelFileError(file: sourcePath ?? "model", .invalidConfig(problem)) }
        guard changed.parameterSpecs() == config.parameterSpecs() else {
            throw ModelFileError(file: sourcePath ?? "model", .invalidConfig("a description change altered the parameters"))
        }
        try self = ViTWeights(config: changed, tensors: tensors, sourcePath: sourcePath, headsSource: headsSource)
    }

    /// The same model with a new classifier for `names.count` classes named `names`: `head` (and DeiT's
    /// `head_dist`) initialised as timm initialises a fresh head when a checkpoint is loaded for another class
    /// count (`init_weights_vit_timm`: truncated-normal std 0.02, zero bias). Everything else is kept; a trimmed
    /// head's `classIds` no longer apply and are dropped. Deterministic in `seed`.
    public func replacingHead(classNames names: [String], seed: UInt64) throws -> ViTWeights {
        var changed = config
        changed.classes = names.count
        changed.classNames = names
        changed.classIds = nil
        var random = SplitMix64(seed: seed)
        var fresh = tensors
        for head in ["head", "head_dist"] where tensors[head + ".weight"] != nil {
            let count = names.count * config.residualWidth
            fresh[head + ".weight"] = HostTensor(shape: [names.count, config.residualWidth],
                                                 values: (0 ..< count).map { _ in Float(random.truncatedNormal() * 0.02) })
            fresh[head + ".bias"] = HostTensor(shape: [names.count], values: [Float](repeating: 0, count: names.count))
        }
        return try ViTWeights(config: changed, tensors: fresh, sourcePath: sourcePath, headsSource: headsSource)
    }

    /// Keeps where the weights came from (so `save` still refuses to write over that file).
    init(config: ViTConfig, tensors: [String: HostTensor], sourcePath: String?, headsSource: HeadsSource?) throws {
        try self.init(config: config, tensors: tensors)
        self.sourcePath = sourcePath
        self.headsSource = headsSource
    }
}
