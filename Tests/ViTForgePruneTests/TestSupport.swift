import Foundation
import ViTForgeDevice
import ViTForgeModel
@testable import ViTForgePrune

/// `Tests/Fixtures`, next to this test target's folder.
let fixturesFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

func fixture(_ name: String) -> String { fixturesFolder.appendingPathComponent(name).path }

/// SplitMix64, so every run draws the same "random" model and keep-sets, and failures reproduce.
struct SeededGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) * 2 - 1 }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// A random subset of `0..<size` with `count` elements, ascending.
    mutating func subset(of size: Int, count: Int) -> [Int] {
        var all = Array(0..<size)
        for i in 0..<count { all.swapAt(i, i + below(size - i)) }
        return all.prefix(count).sorted()
    }

    /// A random non-empty proper subset size when possible (`size` 1: 1).
    mutating func keepCount(_ size: Int) -> Int { size == 1 ? 1 : 1 + below(size - 1) }
}

enum Variant: String, CaseIterable, Sendable {
    case tokenPooling, averagePooling, distilled
}

/// Tiny, deliberately irregular models: per-block heads, q/k ≠ v widths, MLP widths, custom scales, odd sizes.
func irregularConfig(_ variant: Variant) -> ViTConfig {
    let blocks = [
        BlockConfig(heads: 3, qkDim: 4, vDim: 5, mlpHidden: 11, attentionScale: 0.37),
        BlockConfig(heads: 2, qkDim: 5, vDim: 3, mlpHidden: 13, attentionScale: 0.5),
        BlockConfig(heads: 1, qkDim: 3, vDim: 4, mlpHidden: 7),
    ]
    return ViTConfig(imageSize: 9, patchSize: 3, inChannels: 2, classes: 5, residualWidth: 13, blocks: blocks,
                     qkvBias: variant != .averagePooling, pooling: variant == .averagePooling ? .avg : .token,
                     classToken: true, distillationToken: variant == .distilled)
}

/// Random weights for `config` (LayerNorm weights near 1, so no channel is silently switched off).
func randomWeights(_ config: ViTConfig, generator: inout SeededGenerator) throws -> ViTWeights {
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

func randomImages(_ config: ViTConfig, batch: Int, generator: inout SeededGenerator) -> [Float] {
    (0..<(batch * config.inChannels * config.imageSize * config.imageSize)).map { _ in Float(generator.uniform()) }
}

/// The float64 reference of `weights` (float32 values widened), with `overrides` replacing some parameters.
func reference(_ weights: ViTWeights, overrides: [String: [Double]] = [:], masks: ReferenceViT.Masks? = nil) -> ReferenceViT {
    let config = weights.config
    var doubles: [String: [Double]] = [:]
    for spec in config.parameterSpecs() { doubles[spec.name] = weights[spec.name]?.values.map(Double.init) }
    for (name, values) in overrides { doubles[name] = values }
    return ReferenceViT(
        masks: masks, channels: config.inChannels, imageSize: config.imageSize, patch: config.patchSize,
        width: config.residualWidth, classes: config.classes, avgPooling: config.pooling == .avg,
        distilled: config.distillationToken, qkvBias: config.qkvBias, eps: config.layerNormEps,
        blocks: config.blocks.map {
            ReferenceViT.Block(heads: $0.heads, qkDim: $0.qkDim, vDim: $0.vDim, hidden: $0.mlpHidden,
                               scale: $0.attentionScale)
        },
        parameters: doubles)
}

/// The masks that make the full model compute what `plan` keeps.
func masks(for plan: KeepPlan, of config: ViTConfig, clamps: [[Double]?]? = nil) -> ReferenceViT.Masks {
    let residual = Set(plan.residual)
    return ReferenceViT.Masks(
        residual: (0..<config.residualWidth).map(residual.contains),
        blocks: zip(plan.blocks, config.blocks).enumerated().map { b, pair in
            let (keep, block) = pair
            let heads = Dictionary(uniqueKeysWithValues: keep.heads.map { ($0.head, $0) })
            let mlp = Set(keep.mlpHidden)
            return ReferenceViT.BlockMasks(
                heads: (0..<block.heads).map { heads[$0] != nil },
                qk: (0..<block.heads).map { h in (0..<block.qkDim).map { heads[h]?.qkDims.contains($0) ?? false } },
                v: (0..<block.heads).map { h in (0..<block.vDim).map { heads[h]?.vDims.contains($0) ?? false } },
                mlp: (0..<block.mlpHidden).map(mlp.contains),
                mlpClamp: clamps?[b])
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
