import Foundation
import ViTForgeFormats
import ViTForgeRandom

extension ViTWeights {
    /// Fresh weights as timm initialises a `VisionTransformer` (`init_weights_vit_timm`): every Linear weight
    /// truncated-normal with std 0.02 (cut at ±2 std) and zero bias, LayerNorm weight 1 and bias 0, `pos_embed`
    /// truncated-normal 0.02, class/distillation tokens normal with std 1e-6, and the patch-embedding convolution
    /// with PyTorch's default `Conv2d` init (uniform ±1/sqrt(fan_in) for weight and bias). Deterministic in `seed`.
    public static func initialized(config: ViTConfig, seed: UInt64) throws -> ViTWeights {
        var random = SplitMix64(seed: seed)
        var tensors: [String: HostTensor] = [:]
        let fanIn = Double(config.patchElements)
        for spec in config.parameterSpecs() {
            let count = spec.elementCount
            let name = spec.name
            let values: [Float]
            if name == "patch_embed.proj.weight" || name == "patch_embed.proj.bias" {
                let bound = 1 / fanIn.squareRoot()
                values = (0..<count).map { _ in Float((random.unit() * 2 - 1) * bound) }
            } else if name == "cls_token" || name == "dist_token" {
                values = (0..<count).map { _ in Float(random.normal() * 1e-6) }
            } else if name == "pos_embed" || (spec.shape.count == 2 && name.hasSuffix(".weight")) {
                values = (0..<count).map { _ in Float(random.truncatedNormal() * 0.02) }
            } else if name.hasSuffix("norm1.weight") || name.hasSuffix("norm2.weight") || name == "norm.weight"
                        || name == "fc_norm.weight" {
                values = [Float](repeating: 1, count: count)
            } else {
                values = [Float](repeating: 0, count: count)
            }
            tensors[name] = HostTensor(shape: spec.shape, values: values)
        }
        return try ViTWeights(config: config, tensors: tensors)
    }
}
