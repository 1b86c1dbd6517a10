import Foundation

extension ViTWeights {
    /// Fresh weights as timm initialises a `VisionTransformer` (`init_weights_vit_timm`): every Linear weight
    /// truncated-normal with std 0.02 (cut at ±2 std) and zero bias, LayerNorm weight 1 and bias 0, `pos_embed`
    /// truncated-normal 0.02, class/distillation tokens normal with std 1e-6, and the patch-embedding convolution
    /// with PyTorch's default `Conv2d` init (uniform ±1/sqrt(fan_in) for weight and bias). Deterministic in `seed`.
    public static func initialized(config: ViTConfig, seed: UInt64) throws -> ViTWeights {
        var random = SplitMix(seed: seed)
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

/// SplitMix64 (Steele, Lea & Flood 2014) with the few distributions initialisation and random pruning need: our
/// own generator, so that results are reproducible from `--seed` whatever the standard library does.
public struct SplitMix {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Double {
        let u = max(unit(), Double.leastNormalMagnitude)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * unit())
    }

    /// Standard normal restricted to [−2, 2] by rejection, as `torch.nn.init.trunc_normal_(a=-2σ, b=2σ)`.
    public mutating func truncatedNormal() -> Double {
        while true {
            let value = normal()
            if abs(value) <= 2 { return value }
        }
    }
}
