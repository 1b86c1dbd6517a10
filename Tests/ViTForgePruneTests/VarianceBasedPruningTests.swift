import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport

/// VBP's exactness claims (METHODS.md §1.b, §6.4): the statistics are the population mean/variance of the post-GELU
/// activations over every token, and the bias fold makes the pruned model equal the full model with each removed
/// neuron clamped to its mean.
struct VarianceBasedPruningTests {
    struct Setup {
        let weights: ViTWeights
        let images: InMemoryImages
        let statistics: VarianceBasedPruning.NeuronStatistics
    }

    /// With `tokenPruned`, random monotone token sets (from block 3 on only the prefix tokens, except under average
    /// pooling): the later blocks see fewer tokens than the first.
    static func setup(_ variant: Variant, imageCount: Int = 5, batchSize: Int = 2, tokenPruned: Bool = false) throws
        -> Setup {
        let (weights, images, model) = try vbpModelAndImages(variant, seed: 0xB1A5, imageCount: imageCount,
                                                             tokenPruned: tokenPruned)
        // Uneven batches (2, 2, 1) exercise the running merge.
        let statistics = try VarianceBasedPruning.statistics(of: model, images: images, batchSize: batchSize)
        return Setup(weights: weights, images: images, statistics: statistics)
    }

    @Test("statistics equal a direct float64 mean/variance over all tokens (a token-pruned model's blocks: the tokens each sees)",
          arguments: Variant.allCases, [false, true])
    func statisticsAreDirect(variant: Variant, tokenPruned: Bool) throws {
        let setup = try Self.setup(variant, tokenPruned: tokenPruned)
        let backend = CPUBackend()
        let model = try VisionTransformer(weights: setup.weights, backend: backend)
        try model.forward(images: backend.makeBuffer(setup.images.images), batch: setup.images.count)
        let config = setup.weights.config
        let blockRows = config.blocks.indices.map { setup.images.count * config.tokens(inBlock: $0) }
        #expect(setup.statistics.observations == blockRows)
        if tokenPruned { #expect(blockRows.last! < model.lastRows, "the token sets drop nothing: \(blockRows)") }
        for (b, block) in config.blocks.enumerated() {
            let rows = blockRows[b]
            let hidden = try backend.read(model.mlpHiddenActivations(block: b), count: rows * block.mlpHidden)
            for j in 0..<block.mlpHidden {
                let column = (0..<rows).map { Double(hidden[$0 * block.mlpHidden + j]) }
                let mean = column.reduce(0, +) / Double(rows)
                let variance = column.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(rows)
                #expect(abs(setup.statistics.mean[b][j] - mean) < 1e-6)
                #expect(abs(setup.statistics.variance[b][j] - variance) < 1e-6)
            }
        }
    }

    @Test("bias fold is exact: pruned == full with removed neurons clamped to their means",
          arguments: Variant.allCases, [RankingScope.global, .block])
    func biasFoldIsExact(variant: Variant, scope: RankingScope) throws {
        let setup = try Self.setup(variant)
        let config = setup.weights.config
        let scored = try VarianceBasedPruning.scoredSpaces(config: config, statistics: setup.statistics, scope: scope)
        let plan = try scored.plan([.mlpHidden: 0.5])
        // float64: surgery without the fold, then the float64 folded bias put into the pruned reference.
        let check = try VBPFoldCheck(setup.weights, plan: plan, neuronMeans: setup.statistics.mean, seed: 11)
        let float64Error = check.float64Error
        #expect(float64Error < 1e-9, "\(variant) \(scope): float64 error \(float64Error)")

        // The method's own path (bias stored as float32), through the reference and the CPU model.
        let pruned = try VarianceBasedPruning.prune(setup.weights, plan: plan, statistics: setup.statistics,
                                                    biasFold: true)
        #expect(maxDifference(check.logits(pruned), check.clamped) < 1e-5)
        #expect(maxDifference(try cpuLogits(pruned, images: check.images, batch: check.batch), check.clamped) < 1e-4)

        // Without the fold the pruned model is the zero-masked one, which differs from the clamped one.
        let unfolded = try VarianceBasedPruning.prune(setup.weights, plan: plan, statistics: setup.statistics,
                                                      biasFold: false)
        let zeroed = reference(setup.weights, masks: masks(for: plan, of: config))
            .logits(check.doubles, batch: check.batch).flatMap { $0 }
        #expect(maxDifference(check.logits(unfolded), zeroed) < 1e-9)
        #expect(maxDifference(zeroed, check.clamped) > 1e-6)
    }

    @Test func globalRankingRemovesTheLowestVariances() throws {
        let setup = try Self.setup(.tokenPooling)
        let config = setup.weights.config
        let plan = try VarianceBasedPruning.scoredSpaces(config: config, statistics: setup.statistics, scope: .global)
            .plan([.mlpHidden: 0.5])
        let all = setup.statistics.variance.enumerated().flatMap { b, list in list.enumerated().map { (b, $0.offset, $0.element) } }
        let keepCount = Int((0.5 * Double(all.count)).rounded())
        let kept = Set(plan.blocks.enumerated().flatMap { b, keep in keep.mlpHidden.map { "\(b).\($0)" } })
        #expect(kept.count == keepCount)
        let threshold = all.map(\.2).sorted(by: >)[keepCount - 1]
        for (b, j, variance) in all {
            #expect(kept.contains("\(b).\(j)") == (variance >= threshold), "block \(b) neuron \(j)")
        }
        let perBlock = try VarianceBasedPruning.scoredSpaces(config: config, statistics: setup.statistics, scope: .block)
            .plan([.mlpHidden: 0.5])
        #expect(perBlock.blocks.map(\.mlpHidden.count) == config.blocks.map { Int((Double($0.mlpHidden) / 2).rounded()) })
    }

    /// `--vbp-score output-variance`: neurons ranked by σ² · ‖W2[:, j]‖², recomputed here from the weights; the
    /// fold and the cut are the same as for the paper's score, so only the ranking needs its own check.
    @Test func outputVarianceRankingRemovesTheLowestOutputVariances() throws {
        let setup = try Self.setup(.averagePooling)
        let config = setup.weights.config
        let scores = try VarianceBasedPruning.scores(setup.weights, statistics: setup.statistics,
                                                     score: .outputVariance)
        let plan = try VarianceBasedPruning.scoredSpaces(config: config, scores: scores, scope: .global)
            .plan([.mlpHidden: 0.5])
        var all: [(block: Int, neuron: Int, score: Double)] = []
        for (b, block) in config.blocks.enumerated() {
            let w2 = setup.weights["blocks.\(b).mlp.fc2.weight"]!
            for j in 0..<block.mlpHidden {
                let norm = (0..<config.residualWidth).map { Double(w2.values[$0 * block.mlpHidden + j]) }
                    .reduce(0) { $0 + $1 * $1 }
                let expected = setup.statistics.variance[b][j] * norm
                #expect(abs(scores[b][j] - expected) <= 1e-12 * max(1, expected))
                all.append((b, j, expected))
            }
        }
        let keepCount = Int((0.5 * Double(all.count)).rounded())
        let kept = Set(plan.blocks.enumerated().flatMap { b, keep in keep.mlpHidden.map { "\(b).\($0)" } })
        #expect(kept.count == keepCount)
        let threshold = all.map(\.score).sorted(by: >)[keepCount - 1]
        for entry in all {
            #expect(kept.contains("\(entry.block).\(entry.neuron)") == (entry.score >= threshold),
                    "block \(entry.block) neuron \(entry.neuron)")
        }
        // The lowest-variance neuron, given a huge fc2 column, is removed by the paper's score and kept by this one.
        let lowest = all.min { setup.statistics.variance[$0.block][$0.neuron] < setup.statistics.variance[$1.block][$1.neuron] }!
        var boosted = setup.weights
        let name = "blocks.\(lowest.block).mlp.fc2.weight"
        var w2 = boosted[name]!.values
        let hidden = config.blocks[lowest.block].mlpHidden
        for row in 0..<config.residualWidth { w2[row * hidden + lowest.neuron] *= 1e4 }
        try boosted.setValues(name, w2)
        let boostedScores = try VarianceBasedPruning.scores(boosted, statistics: setup.statistics,
                                                            score: .outputVariance)
        let outputPlan = try VarianceBasedPruning.scoredSpaces(config: config, scores: boostedScores, scope: .global)
            .plan([.mlpHidden: 0.5])
        let paperPlan = try VarianceBasedPruning.scoredSpaces(config: config, statistics: setup.statistics,
                                                              scope: .global).plan([.mlpHidden: 0.5])
        #expect(outputPlan.blocks[lowest.block].mlpHidden.contains(lowest.neuron))
        #expect(!paperPlan.blocks[lowest.block].mlpHidden.contains(lowest.neuron))
    }
}
