import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// Random weights for `config` (LayerNorm weights near 1, so no channel is silently switched off).
public func randomWeights(_ config: ViTConfig, generator: inout SeededGenerator) throws -> ViTWeights {
    var tensors: [String: HostTensor] = [:]
    for spec in config.parameterSpecs() {
        let isNormWeight = spec.name.hasSuffix("norm1.weight") || spec.name.hasSuffix("norm2.weight")
            || spec.name == "norm.weight" || spec.name == "fc_norm.weight"
        tensors[spec.name] = HostTensor(shape: spec.shape, values: (0..<spec.elementCount).map { _ in
            Float(isNormWeight ? 1 + 0.2 * generator.uniform() : 0.4 * generator.uniform())
        })
    }
    return try ViTWeights(config: config, tensors: tensors)
}
