import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeSupport
import ViTForgeTestBasics
import ViTForgeTestSupport

/// VBP's head criterion (`VBPHeads.swift`): the merged values' statistics are the population mean/variance over every
/// token, a head's score is the summed variance of its columns, and the fold into `attn.proj.bias` makes the pruned
/// model equal the full one with each removed head's output held at its mean (float64 reference), next to the
/// neurons' fold into `fc2.bias`.
struct VBPHeadTests {
    struct Setup {
        let weights: ViTWeights
        let neurons: VarianceBasedPruning.NeuronStatistics
        let heads: VarianceBasedPruning.NeuronStatistics
        let images: InMemoryImages
    }

    static func setup(_ variant: Variant, imageCount: Int = 5) throws -> Setup {
        let (weights, images, model) = try vbpModelAndImages(variant, seed: 0x4EAD, imageCount: imageCount)
        // Uneven batches (2, 2, 1) exercise the running merge; both kinds come from the same pass.
        let all = try VarianceBasedPruning.statistics(of: model, images: images, activations: [.mlpHidden, .mergedValues],
                                                      batchSize: 2)
        return Setup(weights: weights, neurons: try #require(all[.mlpHidden]), heads: try #require(all[.mergedValues]),
                     images: images)
    }

    @Test("merged values' statistics equal a direct float64 mean/variance; neurons' equal the one-kind pass",
          arguments: Variant.allCases)
    func statisticsAreDirect(variant: Variant) throws {
        let setup = try Self.setup(variant)
        let backend = CPUBackend()
        let model = try VisionTransformer(weights: setup.weights, backend: backend)
        try model.forward(images: backend.makeBuffer(setup.images.images), batch: setup.images.count)
        let rows = model.lastRows
        #expect(setup.heads.observations == [Int](repeating: rows, count: setup.weights.config.depth))
        for (b, block) in setup.weights.config.blocks.enumerated() {
            let width = block.attentionWidth
            let merged = try backend.read(model.attentionMergedValues(block: b), count: rows * width)
            for j in 0 ..< width {
                let column = (0 ..< rows).map { Double(merged[$0 * width + j]) }
                let mean = column.reduce(0, +) / Double(rows)
                let variance = column.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(rows)
                #expect(abs(setup.heads.mean[b][j] - mean) < 1e-6)
                #expect(abs(setup.heads.variance[b][j] - variance) < 1e-6)
            }
        }
        let neuronsAlone = try VarianceBasedPruning.statistics(of: model, images: setup.images, batchSize: 2)
        #expect(neuronsAlone == setup.neurons)
    }

    @Test("head scores: summed variance of the head's columns (× ‖proj column‖² for output-variance); top kept")
    func headScoresAndRanking() throws {
        let setup = try Self.setup(.distilled)
        let config = setup.weights.config
        let variance = try VarianceBasedPruning.headScores(setup.weights, statistics: setup.heads, score: .variance)
        let output = try VarianceBasedPruning.headScores(setup.weights, statistics: setup.heads,
                                                         score: .outputVariance)
        var all: [(block: Int, head: Int, score: Double)] = []
        for (b, block) in config.blocks.enumerated() {
            let layout = QKVLayout(block)
            let proj = setup.weights["blocks.\(b).attn.proj.weight"]!
            #expect(variance[b].count == block.heads)
            for h in 0 ..< block.heads {
                let columns = (layout.vOffsets[h] ..< layout.vOffsets[h] + layout.vDims[h])
                let expected = columns.reduce(0) { $0 + setup.heads.variance[b][$1] }
                let expectedOutput = columns.reduce(0.0) { sum, j in
                    let norm = (0 ..< config.residualWidth).reduce(0.0) {
                        let w = Double(proj.values[$1 * block.attentionWidth + j])
                        return $0 + w * w
                    }
                    return sum + setup.heads.variance[b][j] * norm
                }
                #expect(abs(variance[b][h] - expected) <= 1e-12 * max(1, expected))
                #expect(abs(output[b][h] - expectedOutput) <= 1e-12 * max(1, expectedOutput))
                all.append((b, h, expected))
            }
        }
        let neuronScores = try VarianceBasedPruning.scores(setup.weights, statistics: setup.neurons, score: .variance)
        let plan = try VarianceBasedPruning.scoredSpaces(config: config, neuronScores: neuronScores,
                                                         headScores: variance, scope: .global)
            .plan([.heads: 0.5])
        // The top half of all heads by score, then at least one head per block (a block keeps its best).
        let keepCount = Int((0.5 * Double(all.count)).rounded())
        let top = all.sorted { $0.score > $1.score }.prefix(keepCount)
        var expected = Set(top.map { "\($0.block).\($0.head)" })
        for b in config.blocks.indices where !top.contains(where: { $0.block == b }) {
            if let best = all.filter({ $0.block == b }).max(by: { $0.score < $1.score }) {
                expected.insert("\(b).\(best.head)")
            }
        }
        let kept = Set(plan.blocks.enumerated().flatMap { b, keep in keep.heads.map { "\(b).\($0.head)" } })
        #expect(kept == expected)
        #expect(plan.blocks.map(\.mlpHidden.count) == config.blocks.map(\.mlpHidden))  // heads only: MLP intact
    }

    @Test("fold is exact: pruned == full with removed heads and neurons held at their means (float64)",
          arguments: Variant.allCases, [RankingScope.global, .block])
    func foldIsExact(variant: Variant, scope: RankingScope) throws {
        let setup = try Self.setup(variant)
        let config = setup.weights.config
        let plan = try VarianceBasedPruning.scoredSpaces(
            config: config, neuronScores: setup.neurons.variance,
            headScores: VarianceBasedPruning.headScores(setup.weights, statistics: setup.heads, score: .variance),
            scope: scope).plan([.mlpHidden: 0.5, .heads: 0.5])
        #expect(plan.blocks.map(\.heads.count).reduce(0, +) < config.blocks.map(\.heads).reduce(0, +))
        // float64: surgery without any fold, then both folded biases, computed here, put into the pruned reference.
        var check = try VBPFoldCheck(setup.weights, plan: plan, neuronMeans: setup.neurons.mean,
                                     headMeans: setup.heads.mean, seed: 12)
        for (b, block) in config.blocks.enumerated() {
            // The removed heads' columns, from the plan's heads (not from the code under test's column lookup).
            let keptHeads = Set(plan.blocks[b].heads.map(\.head))
            let layout = QKVLayout(block)
            let removed = (0 ..< block.heads).filter { !keptHeads.contains($0) }
                .flatMap { h in (0 ..< layout.vDims[h]).map { layout.vOffsets[h] + $0 } }
            let proj = setup.weights["blocks.\(b).attn.proj.weight"]!
            let bias = setup.weights["blocks.\(b).attn.proj.bias"]!.values
            check.overrides["blocks.\(b).attn.proj.bias"] = (0 ..< config.residualWidth).map { o in
                removed.reduce(Double(bias[o])) {
                    $0 + Double(proj.values[o * block.attentionWidth + $1]) * setup.heads.mean[b][$1]
                }
            }
        }
        let float64Error = check.float64Error
        #expect(float64Error < 1e-9, "\(variant) \(scope): float64 error \(float64Error)")

        // The method's own path (biases stored as float32), through the reference and the CPU model.
        let pruned = try VarianceBasedPruning.prune(setup.weights, plan: plan, statistics: setup.neurons,
                                                    headStatistics: setup.heads, biasFold: true)
        #expect(maxDifference(check.logits(pruned), check.clamped) < 1e-5)
        #expect(maxDifference(try cpuLogits(pruned, images: check.images, batch: check.batch), check.clamped) < 1e-4)

        // Heads held at zero instead (the neurons' fold alone) is a different model: the head fold matters.
        let neuronsOnly = reference(setup.weights, masks: masks(for: plan, of: config, clamps: setup.neurons.mean))
            .logits(check.doubles, batch: check.batch).flatMap { $0 }
        #expect(maxDifference(neuronsOnly, check.clamped) > 1e-6)
    }

    @Test("vbp with --keep-heads in the pipeline: plan, folded cut, cut reported; --compensate refits both layers")
    func methodWithHeads() throws {
        var generator = SeededGenerator(seed: 0x7B9)
        let config = MethodPlatformTests.config
        let weights = try randomWeights(config, generator: &generator)
        let budget = Budget(keepMLP: 0.5, keepHeads: 0.5)
        let method = VarianceBasedPruning()
        #expect(method.problem(with: budget, epochs: 0) == nil)
        #expect(method.problem(with: Budget(keepResidual: 0.5), epochs: 0)?.contains("--keep-heads") == true)
        let context = PruningContext(original: weights, data: try MethodPlatformTests.data(), backend: CPUBackend(),
                                     budget: budget, scope: .block, batchSize: 8, training: TrainingPhase(epochs: 0))
        let outcome = try method.prune(context)
        let cut = try #require(outcome.cut)
        #expect(cut.plan.blocks.map(\.mlpHidden.count) == [6, 4])  // 11 → 6, 7 → 4 (halves round up)
        #expect(cut.plan.blocks.map(\.heads.count) == [1, 2])      // 2 → 1, 3 → 2
        #expect(outcome.weights.config == (try cut.plan.prunedConfig(of: config)))
        // The method's weights are the folded cut of the unfolded source, from the same pass's statistics.
        let result = try VarianceBasedPruning.run(weights, backend: CPUBackend(), images: context.calibration,
                                                  limit: context.calibrationLimit, batchSize: 8,
                                                  options: .init(scope: .block), budget: budget)
        let heads = try #require(result.headStatistics)
        let folded = try VarianceBasedPruning.prune(weights, plan: cut.plan, statistics: result.statistics,
                                                    headStatistics: heads, biasFold: true)
        for name in ["blocks.0.attn.proj.bias", "blocks.1.attn.proj.bias", "blocks.1.mlp.fc2.bias"] {
            #expect(outcome.weights[name]?.values == folded[name]?.values, "\(name)")
            #expect(outcome.weights[name]?.values != (try Surgery.prune(weights, plan: cut.plan))[name]?.values)
        }
        // The sequential default: both layers of every block in depth order, then the classifier.
        let (compensated, records) = try CompensationSettings().apply(to: outcome, context: context, method: "vbp")
        #expect(compensated.weights.config == outcome.weights.config)
        #expect(records.map(\.layer) == ["blocks.0.attn.proj", "blocks.0.mlp.fc2", "blocks.1.attn.proj",
                                         "blocks.1.mlp.fc2", "head"])
        for record in records { #expect(record.error.refit <= record.error.meanShift * (1 + 1e-9) + 1e-12) }
    }

    @Test("reach is checked at the fixed head fraction's per-block share: fm-vit-c at 25% MACs with half its heads")
    func reachWithHeads() throws {
        let config = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2).config
        // Reachable: one head of two per block and the MLP cut to a few neurons (what the sweep's row cuts).
        try VarianceBasedPruning.checkMLPReach(Budget(keepHeads: 0.5, target: .macs(0.25)), config: config)
        // Out of reach with every head kept (MLP neurons are 61% of fm-vit-c's MACs).
        #expect(throws: PruneError.self) {
            try VarianceBasedPruning.checkMLPReach(Budget(target: .macs(0.25)), config: config)
        }
    }
}
