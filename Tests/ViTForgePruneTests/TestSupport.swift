import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport

enum Variant: String, CaseIterable, Sendable {
    case tokenPooling, averagePooling, distilled
}

/// Tiny, deliberately irregular models: per-block heads, q/k ≠ v widths, MLP widths, custom scales, odd sizes.
func irregularConfig(_ variant: Variant) -> ViTConfig {
    let blocks = [
        BlockConfig(heads: 3, qkDim: 4, vDim: 5, mlpHidden: 11, attentionScale: 0.37),
        BlockConfig(heads: 2, qkDim: 5, vDim: 3, mlpHidden: 13, attentionScale: 0.5),
        BlockConfig(heads: 1, qkDim: 3, vDim: 4, mlpHidden: 7),
        BlockConfig(qkDims: [2, 4, 3], vDims: [3, 1, 5], mlpHidden: 6, attentionScale: 0.42),
    ]
    return ViTConfig(imageSize: 9, patchSize: 3, inChannels: 2, classes: 5, residualWidth: 13, blocks: blocks,
                     qkvBias: variant != .averagePooling, pooling: variant == .averagePooling ? .avg : .token,
                     classToken: true, distillationToken: variant == .distilled)
}

func randomImages(_ config: ViTConfig, batch: Int, generator: inout SeededGenerator) -> [Float] {
    (0..<(batch * config.inChannels * config.imageSize * config.imageSize)).map { _ in Float(generator.uniform()) }
}

/// The float64 reference of `weights` (float32 values widened), with `overrides` replacing some parameters.
func reference(_ weights: ViTWeights, overrides: [String: [Double]] = [:], masks: ReferenceViT.Masks? = nil) -> ReferenceViT {
    let config = weights.config
    var doubles: [String: [Double]] = [:]
    for spec in config.parameterSpecs() { doubles[spec.name] = weights[spec.name]?.values.map(Double.init) }
    for (name, values) in overrides { doubles[name] = values }
    return ReferenceViT(config: config, parameters: doubles, masks: masks)
}

/// The masks that make the full model compute what `plan` keeps (removed neurons and heads held at `clamps` and
/// `headClamps`, per block, when given).
func masks(for plan: KeepPlan, of config: ViTConfig, clamps: [[Double]?]? = nil,
           headClamps: [[Double]?]? = nil) -> ReferenceViT.Masks {
    let residual = Set(plan.residual)
    return ReferenceViT.Masks(
        residual: (0..<config.residualWidth).map(residual.contains),
        blocks: zip(plan.blocks, config.blocks).enumerated().map { b, pair in
            let (keep, block) = pair
            let heads = Dictionary(uniqueKeysWithValues: keep.heads.map { ($0.head, $0) })
            let mlp = Set(keep.mlpHidden)
            return ReferenceViT.BlockMasks(
                heads: (0..<block.heads).map { heads[$0] != nil },
                qk: (0..<block.heads).map { h in (0..<block.qkDims[h]).map { heads[h]?.qkDims.contains($0) ?? false } },
                v: (0..<block.heads).map { h in (0..<block.vDims[h]).map { heads[h]?.vDims.contains($0) ?? false } },
                mlp: (0..<block.mlpHidden).map(mlp.contains),
                mlpClamp: clamps?[b], headClamp: headClamps?[b])
        })
}

func maxDifference(_ a: [Double], _ b: [Double]) -> Double {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// Logits of `weights` on the CPU backend, widened to float64.
func cpuLogits(_ weights: ViTWeights, images: [Float], batch: Int) throws -> [Double] {
    let backend = CPUBackend()
    let model = try VisionTransformer(weights: weights, backend: backend)
    let logits = try model.forward(images: backend.makeBuffer(images), batch: batch)
    return try backend.read(logits, count: batch * weights.config.classes).map(Double.init)
}
