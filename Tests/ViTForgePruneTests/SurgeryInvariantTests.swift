import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeSupport
import ViTForgeTestBasics
import ViTForgeTestSupport

/// The surgery invariant: a pruned model computes exactly what the full model computes with the removed channels
/// masked (residual width: with every LayerNorm over the kept channels only). Random keep-sets in every space, alone
/// and combined, on three irregular model variants; float64 reference (1e-9) and the float32 CPU model (1e-4).
struct SurgeryInvariantTests {
    enum Spaces: String, CaseIterable, Sendable {
        case residual, heads, qkDims, vDims, mlpHidden, all
    }

    /// A random plan restricting the chosen spaces, built through `KeepPlan.keep(_:in:of:)` with group indices.
    static func randomPlan(_ config: ViTConfig, _ spaces: Spaces, generator: inout SeededGenerator) throws -> KeepPlan {
        var plan = KeepPlan(keepingAllOf: config)
        if spaces == .residual || spaces == .all {
            let size = config.residualWidth
            try plan.keep(generator.subset(of: size, count: generator.keepCount(size)), in: .residual, of: config)
        }
        for (b, block) in config.blocks.enumerated() {
            if spaces == .heads || spaces == .all {
                try plan.keep(generator.subset(of: block.heads, count: generator.keepCount(block.heads)),
                              in: .heads(block: b), of: config)
            }
            // Every head keeps its own random number of dims (heads of different widths), each its own random set.
            let layout = QKVLayout(block)
            if spaces == .qkDims || spaces == .all {
                let kept = (0..<block.heads).flatMap { h in
                    generator.subset(of: layout.qkDims[h], count: generator.keepCount(layout.qkDims[h]))
                        .map { layout.qkOffsets[h] + $0 }
                }
                try plan.keep(kept, in: .qkDims(block: b), of: config)
            }
            if spaces == .vDims || spaces == .all {
                let kept = (0..<block.heads).flatMap { h in
                    generator.subset(of: layout.vDims[h], count: generator.keepCount(layout.vDims[h]))
                        .map { layout.vOffsets[h] + $0 }
                }
                try plan.keep(kept, in: .vDims(block: b), of: config)
            }
            if spaces == .mlpHidden || spaces == .all {
                try plan.keep(generator.subset(of: block.mlpHidden, count: generator.keepCount(block.mlpHidden)),
                              in: .mlpHidden(block: b), of: config)
            }
        }
        return plan
    }

    @Test("pruned model == masked full model", arguments: Variant.allCases, Spaces.allCases)
    func prunedEqualsMasked(variant: Variant, spaces: Spaces) throws {
        for trial in 0..<3 {
            var generator = SeededGenerator(seed: 0xC0FFEE ^ UInt64(trial) << 8 ^ spaces.rawValue.hashStable
                                            ^ variant.rawValue.hashStable)
            let config = irregularConfig(variant)
            let weights = try randomWeights(config, generator: &generator)
            let plan = try Self.randomPlan(config, spaces, generator: &generator)
            let pruned = try Surgery.prune(weights, plan: plan)
            let batch = 2
            let images = randomImages(config, batch: batch, generator: &generator)
            let doubles = images.map(Double.init)

            let expected = reference(weights, masks: masks(for: plan, of: config)).logits(doubles, batch: batch).flatMap { $0 }
            let prunedReference = reference(pruned).logits(doubles, batch: batch).flatMap { $0 }
            let float64Error = maxDifference(prunedReference, expected)
            #expect(float64Error < 1e-9, "\(variant) \(spaces) trial \(trial): float64 error \(float64Error)")
            let float32Error = maxDifference(try cpuLogits(pruned, images: images, batch: batch), expected)
            #expect(float32Error < 1e-4, "\(variant) \(spaces) trial \(trial): CPU float32 error \(float32Error)")

            // Masking must matter, or the test would pass for a surgery that keeps everything.
            let unmasked = reference(weights).logits(doubles, batch: batch).flatMap { $0 }
            #expect(maxDifference(unmasked, expected) > 1e-6, "\(variant) \(spaces): the masks changed nothing")
            // Widths and scales recorded in the config; the scale is the original's.
            for (b, block) in pruned.config.blocks.enumerated() {
                #expect(block.attentionScale == config.blocks[b].attentionScale)
                #expect(block.heads == plan.blocks[b].heads.count && block.mlpHidden == plan.blocks[b].mlpHidden.count)
            }
            #expect(pruned.config.residualWidth == plan.residual.count)
        }
    }

    @Test func surgeryKeepingEverythingIsIdentity() throws {
        var generator = SeededGenerator(seed: 3)
        let weights = try randomWeights(irregularConfig(.distilled), generator: &generator)
        #expect(try Surgery.prune(weights, plan: KeepPlan(keepingAllOf: weights.config)) == weights)
    }

    @Test func prunedModelRoundTripsThroughSafetensors() throws {
        var generator = SeededGenerator(seed: 4)
        let config = irregularConfig(.tokenPooling)
        let weights = try randomWeights(config, generator: &generator)
        let pruned = try Surgery.prune(weights, plan: Self.randomPlan(config, .all, generator: &generator))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-prune-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try pruned.save(to: path)
        let loaded = try ViTWeights.load(path: path)
        #expect(loaded == pruned)
    }

    @Test func refusesToEmptyASpace() throws {
        let config = irregularConfig(.tokenPooling)
        var generator = SeededGenerator(seed: 5)
        let weights = try randomWeights(config, generator: &generator)
        let cases: [(SpaceKind, String)] = [(.mlpHidden(block: 0), "MLP"), (.residual, "residual"),
                                            (.qkDims(block: 2), "q/k")]
        for (kind, word) in cases {
            var plan = KeepPlan(keepingAllOf: config)
            try plan.keep([], in: kind, of: config)
            do {
                _ = try Surgery.prune(weights, plan: plan)
                Issue.record("\(kind): emptied without an error")
            } catch let error as PruneError {
                guard case .emptySpace = error else { Issue.record("\(kind): \(error)"); continue }
                #expect(error.description.contains(word), "\(error)")
            }
        }
    }

    @Test("uneven kept heads give per-head widths; a head without v dims disappears; v without q/k is refused")
    func unevenHeads() throws {
        let config = irregularConfig(.tokenPooling)  // block 0: 3 heads of q/k 4, v 5
        var plan = KeepPlan(keepingAllOf: config)
        try plan.keep([0, 1, 4, 8, 9, 10], in: .qkDims(block: 0), of: config)  // heads keep 2, 1 and 3 q/k dims
        let uneven = try plan.prunedConfig(of: config).blocks[0]
        #expect(uneven.qkDims == [2, 1, 3] && uneven.vDims == [5, 5, 5] && uneven.heads == 3)
        try plan.keep([0, 1, 2, 3, 4, 10, 11], in: .vDims(block: 0), of: config)  // head 1 keeps no v dim
        let fewer = try plan.prunedConfig(of: config).blocks[0]
        #expect(fewer.heads == 2 && fewer.qkDims == [2, 3] && fewer.vDims == [5, 2])
        #expect(fewer.attentionScale == config.blocks[0].attentionScale)
        var other = KeepPlan(keepingAllOf: config)
        try other.keep([0, 4], in: .qkDims(block: 0), of: config)    // head 2 keeps v dims but no q/k dim
        #expect(throws: PruneError.self) { try other.prunedConfig(of: config) }
        #expect(throws: PruneError.self) { try other.keep([99], in: .mlpHidden(block: 0), of: config) }
    }

    @Test("a block whose heads are all removed keeps only proj's bias: pruned == masked reference")
    func blockWithoutHeads() throws {
        for variant in Variant.allCases {
            let config = irregularConfig(variant)
            var generator = SeededGenerator(seed: 0xE0 ^ variant.rawValue.hashStable)
            let weights = try randomWeights(config, generator: &generator)
            for kind in [SpaceKind.heads(block: 1), .vDims(block: 0)] {
                var plan = KeepPlan(keepingAllOf: config)
                try plan.keep([], in: kind, of: config)
                let pruned = try Surgery.prune(weights, plan: plan)
                let b = kind == .heads(block: 1) ? 1 : 0
                #expect(pruned.config.blocks[b].heads == 0 && pruned.config.blocks[b].attentionWidth == 0)
                #expect(pruned[ "blocks.\(b).attn.qkv.weight"]?.shape == [0, config.residualWidth])
                let images = randomImages(config, batch: 2, generator: &generator)
                let expected = reference(weights, masks: masks(for: plan, of: config))
                    .logits(images.map(Double.init), batch: 2).flatMap { $0 }
                #expect(maxDifference(reference(pruned).logits(images.map(Double.init), batch: 2).flatMap { $0 },
                                      expected) < 1e-9)
                #expect(maxDifference(try cpuLogits(pruned, images: images, batch: 2), expected) < 1e-4)
            }
        }
    }
}
