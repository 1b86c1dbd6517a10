import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport
import ViTForgeTrain

/// ViT-Slim's token search (issue 28, parts 1-2): the tanh(ρ) penalty term, the --keep-tokens cut and its budget
/// arithmetic, and the search through the pipeline (--from-search, stop and resume) with token masks.
@Suite(.serialized)
struct ViTSlimTokenTests {
    static func randomTokenMasks(_ config: ViTConfig, _ generator: inout SeededGenerator) -> [[Float]] {
        config.blocks.map { _ in
            (0 ..< config.tokens).map { $0 < config.prefixTokens ? 1 : Float(0.5 + 0.45 * generator.uniform()) }
        }
    }

    @Test("the token term: value w·Σ|tanh ρ| over patch tokens, gradient onto ρ through tanh, prefix untouched")
    func tokenPenaltyTerm() throws {
        let backend = CPUBackend()
        var generator = SeededGenerator(seed: 41)
        let config = ViTSlimTests.config()
        let model = try VisionTransformer(weights: randomWeights(config, generator: &generator), backend: backend)
        let trainer = try TrainingPhase(epochs: 1, batchSize: 8, augmentation: .none)
            .makeTrainer(student: model.hostWeights(), teacher: model.hostWeights(),
                         training: MethodPlatformTests.data().training, backend: backend)
        let masks = try SearchTokenMasks(trainer: trainer, learningRateScale: 1)
        #expect(try backend.read(masks.blocks[0].values)[1] == tanh(Float(3)))
        let w = 0.02
        var expectedValue = 0.0
        var expected: [[Float]] = []
        for block in masks.blocks {
            let rho = (0 ..< config.tokens).map { _ in Float(2 * generator.uniform()) }
            let dm = (0 ..< config.tokens).map { _ in Float(generator.uniform()) }
            try backend.write(rho, to: block.rho)
            try backend.fill(block.rhoGradient, value: 0, offset: 0, count: config.tokens)
            try masks.refresh()
            try backend.write(dm, to: block.valueGradient)
            expected.append((0 ..< config.tokens).map { t in
                guard t >= config.prefixTokens else { return 0 }
                let m = Double(tanh(rho[t]))
                expectedValue += w * abs(m)
                return Float((Double(dm[t]) + w * (m > 0 ? 1 : -1)) * (1 - m * m))
            })
        }
        let value = try TokenSparsityPenalty(masks: masks, weight: w).addGradient(trainer)
        #expect(abs(value - expectedValue) <= 1e-5 * expectedValue)
        for (block, want) in zip(masks.blocks, expected) {
            let got = try backend.read(block.rhoGradient)
            #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }, "\(got) vs \(want)")
            #expect(try backend.read(block.valueGradient).allSatisfy { $0 == 0 })
        }
    }

    @Test("--keep-tokens: monotone sets by one threshold; MACs equal a float64 count; a target solves the rest")
    func keepTokensBudget() throws {
        let weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        let config = weights.config
        var generator = SeededGenerator(seed: 29)
        var masks = ViTSlimTests.randomMasks(config, .dim, &generator)
        masks.tokens = Self.randomTokenMasks(config, &generator)
        let tokenMasks = try #require(masks.tokens)
        let sets = try #require(ViTSlim.tokenSets(tokenMasks, keep: 0.7, config: config))
        let patchEntries = config.depth * config.patchCount
        let threshold = masks.tokens!.flatMap { $0.dropFirst(config.prefixTokens) }.sorted()[Int(0.3 * Double(patchEntries))]
        for (b, set) in sets.enumerated() {
            // Each kept position is at or above the threshold in this block or a deeper one.
            for position in set.dropFirst(config.prefixTokens) {
                #expect(masks.tokens![b...].contains { $0[position] >= threshold })
            }
            if b > 0 { #expect(Set(set).isSubset(of: Set(sets[b - 1]))) }
        }
        var options = ViTSlim.Options()
        options.keepTokens = 0.7
        let data = try MethodPlatformTests.data()
        let context = PruningContext(original: weights, data: data, backend: CPUBackend(),
                                     budget: Budget(keepMLP: 0.5), training: TrainingPhase(epochs: 0))
        let (pruned, outcome) = try ViTSlim(options: options).extract(weights, masks: masks, context: context)
        #expect(pruned.config.tokenSets == sets)
        var macs = Double(config.patchCount * config.patchElements * config.residualWidth + config.residualWidth * config.classes)
        for (b, block) in pruned.config.blocks.enumerated() {
            let t = Double(sets[b].count), d = Double(config.residualWidth)
            let qk = Double(block.qkDims.reduce(0, +)), v = Double(block.vDims.reduce(0, +))
            macs += t * d * (2 * qk + v) + t * t * (qk + v) + t * v * d + 2 * t * d * Double(block.mlpHidden)
        }
        #expect(Double(outcome.macs) == macs)
        #expect(outcome.originalMacs == config.cost().macs)
        let targeted = PruningContext(original: weights, data: data, backend: CPUBackend(),
                                      budget: Budget(target: .macs(0.4)), training: TrainingPhase(epochs: 0))
        let (small, _) = try ViTSlim(options: options).extract(weights, masks: masks, context: targeted)
        let achieved = Double(small.config.cost().macs) / Double(config.cost().macs)
        #expect(abs(achieved - 0.4) <= 0.02 * 0.4 && small.config.tokenSets == sets, "MACs kept \(achieved)")
    }

    static func pipeline(checkpoint: String? = nil, resume: Bool = false, saveSearch: String? = nil,
                         fromSearch: String? = nil) -> PruningPipeline {
        var search = TrainingPhase(name: "slim", epochs: fromSearch == nil ? 2 : 0, batchSize: 8, learningRate: 1e-2,
                                   distill: true, augmentation: .none, seed: 5, checkpointPath: checkpoint,
                                   checkpointEvery: 1, resume: resume)
        search.stopsOnInterrupt = false
        var options = ViTSlim.Options(attentionPenalty: 0.05, mlpPenalty: 0.02, keepAttention: 0.6,
                                      saveSearch: saveSearch, fromSearch: fromSearch)
        options.keepTokens = 0.6
        options.tokenPenalty = 0.05
        // Adam moves ρ by about lr per step: 10 steps from ρ = 3 move tanh(ρ) by only ~1e-3 at the weights' lr.
        options.tokenLearningRateScale = 10
        return PruningPipeline(method: ViTSlim(options: options), budget: Budget(keepMLP: 0.5), batchSize: 8,
                               methodTraining: search, latencyBatches: [2], seed: 5)
    }

    @Test("a token search: masks move, the cut gathers tokens, --from-search equals the full run, resume is identical")
    func tokenSearchThroughPipeline() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-slim-tokens-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let saved = folder.appendingPathComponent("search.safetensors").path
        let first = try ViTSlimTests.run(Self.pipeline(saveSearch: saved))
        let searched = try ViTSlim.readSearch(saved)
        let tokens = try #require(searched.masks.tokens)
        #expect(tokens.flatMap { $0.dropFirst(1) }.contains { $0 < tanh(Float(3)) - 1e-3 }, "no token mask moved")
        #expect(tokens.allSatisfy { $0[0] == 1 })
        let sets = try #require(first.weights.config.tokenSets)
        #expect(sets.last!.count < ViTSlimTests.config().tokens)
        #expect(first.report?.histograms["slim token masks"] != nil)
        let cut = try ViTSlimTests.run(Self.pipeline(fromSearch: saved))
        #expect(cut.weights == first.weights, "--from-search differs from the full run")
        let checkpoint = folder.appendingPathComponent("search.checkpoint.safetensors").path
        let stopped = try ViTSlimTests.run(Self.pipeline(checkpoint: checkpoint)) { $0.step == 4 }
        #expect(stopped.stopped)
        let resumed = try ViTSlimTests.run(Self.pipeline(checkpoint: checkpoint, resume: true))
        #expect(resumed.weights == first.weights, "a resumed token search differs from the uninterrupted one")
    }
}
