import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport

/// What VBP's statistics are measured on in its tests (neurons alone, neurons and heads): an irregular random
/// model of `variant`, `imageCount` random images (all labelled 0) and the model on the CPU backend. With
/// `tokenPruned`, random monotone token sets (from block 3 on only the prefix tokens, except under average pooling).
func vbpModelAndImages(_ variant: Variant, seed: UInt64, imageCount: Int, tokenPruned: Bool = false) throws
    -> (weights: ViTWeights, images: InMemoryImages, model: VisionTransformer) {
    var generator = SeededGenerator(seed: seed ^ variant.rawValue.hashStable)
    let config = irregularConfig(variant)
    var weights = try randomWeights(config, generator: &generator)
    if tokenPruned {
        try weights.setTokenSets(randomTokenSets(config, prefixOnlyFrom: variant == .averagePooling ? nil : 3,
                                                 generator: &generator))
    }
    let pixels = randomImages(config, batch: imageCount, generator: &generator)
    let images = try InMemoryImages(images: pixels, labels: [Int32](repeating: 0, count: imageCount),
                                    imageElements: pixels.count / imageCount)
    return (weights, images, try VisionTransformer(weights: weights, backend: CPUBackend()))
}

/// What VBP's fold tests (neurons alone, neurons and heads) share: a random batch, the full model's float64 logits
/// on it with the removed neurons (and heads) held at their means, the cut without any fold, and the float64 fc2
/// biases that the neurons' fold must give the cut (overrides of the pruned reference; a test adds its own).
struct VBPFoldCheck {
    let images: [Float]
    let doubles: [Double]
    let batch = 2
    /// The full model's float64 logits with what `plan` removes held at the given means.
    let clamped: [Double]
    /// `plan`'s surgery without any fold.
    let cut: ViTWeights
    /// Per block, `blocks.B.mlp.fc2.bias` with the removed neurons' means folded in (float64, computed here).
    var overrides: [String: [Double]] = [:]

    init(_ weights: ViTWeights, plan: KeepPlan, neuronMeans: [[Double]], headMeans: [[Double]?]? = nil,
         seed: UInt64) throws {
        let config = weights.config
        var generator = SeededGenerator(seed: seed)
        images = randomImages(config, batch: batch, generator: &generator)
        doubles = images.map(Double.init)
        clamped = reference(weights, masks: masks(for: plan, of: config, clamps: neuronMeans, headClamps: headMeans))
            .logits(doubles, batch: batch).flatMap { $0 }
        cut = try Surgery.prune(weights, plan: plan)
        for (b, block) in config.blocks.enumerated() {
            let kept = Set(plan.blocks[b].mlpHidden)
            overrides["blocks.\(b).mlp.fc2.bias"] = VarianceBasedPruning.foldedBias(
                fc2Weight: weights["blocks.\(b).mlp.fc2.weight"]!,
                fc2Bias: weights["blocks.\(b).mlp.fc2.bias"]!.values,
                removed: (0 ..< block.mlpHidden).filter { !kept.contains($0) }, mean: neuronMeans[b])
        }
    }

    /// The float64 logits of `weights` on the batch.
    func logits(_ weights: ViTWeights, overrides: [String: [Double]] = [:]) -> [Double] {
        reference(weights, overrides: overrides).logits(doubles, batch: batch).flatMap { $0 }
    }

    /// How far the cut with `overrides` is from the clamped full model (float64 throughout).
    var float64Error: Double { maxDifference(logits(cut, overrides: overrides), clamped) }
}
