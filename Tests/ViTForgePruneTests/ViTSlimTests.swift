import Foundation
import Testing
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeSupport
import ViTForgeTestBasics
import ViTForgeTestSupport
import ViTForgeTrain

/// ViT-Slim: threshold selection, exact folding, the budget solver, and the search through the pipeline (saved
/// searches cut again, stop and resume).
@Suite(.serialized)
struct ViTSlimTests {
    /// Heads whose q/k and v widths are equal (ViT-Slim's masks span q, k and v of a dim), one block of uneven heads.
    static func config(granularity: AttentionMaskGranularity = .dim) -> ViTConfig {
        ViTConfig(imageSize: 9, patchSize: 3, inChannels: 1, classes: 5, residualWidth: 13, blocks: [
            BlockConfig(heads: 3, qkDim: 5, vDim: 5, mlpHidden: 11, attentionScale: 0.37),
            granularity == .sharedDim ? BlockConfig(heads: 2, qkDim: 4, vDim: 4, mlpHidden: 7)
                : BlockConfig(qkDims: [3, 1, 4], vDims: [3, 1, 4], mlpHidden: 7, attentionScale: 0.45),
        ])
    }

    static func randomMasks(_ config: ViTConfig, _ granularity: AttentionMaskGranularity,
                            _ generator: inout SeededGenerator) -> ViTSlim.Masks {
        ViTSlim.Masks(granularity: granularity,
                      attention: config.blocks.map { block in
                          (0 ..< QKVLayout(block).maskCount(granularity)).map { _ in
                              Float(0.75 + 0.7 * generator.uniform()) }
                      },
                      mlp: config.blocks.map { block in
                          (0 ..< block.mlpHidden).map { _ in Float(0.75 + 0.7 * generator.uniform()) } })
    }

    @Test("one threshold per module type keeps what a plain sort keeps")
    func thresholdSelection() {
        var generator = SeededGenerator(seed: 17)
        let values: [[Float]] = [13, 7, 29].map { count in (0 ..< count).map { _ in Float(generator.uniform()) } }
        let all = values.enumerated().flatMap { b, row in row.enumerated().map { (value: $1, block: b, index: $0) } }
        for keep in [0.1, 0.37, 0.5, 0.9, 1.0] {
            let dropped = Int((1 - keep) * Double(all.count))
            let removed = Set(all.sorted { $0.value < $1.value }.prefix(dropped).map { "\($0.block).\($0.index)" })
            let expected = values.enumerated().map { b, row in row.indices.map { !removed.contains("\(b).\($0)") } }
            #expect(ViTSlim.kept(values, keep: keep) == expected, "keep \(keep)")
        }
    }

    @Test("folded extraction computes the soft-masked model with the removed entries at 0 (float64 and product)",
          arguments: AttentionMaskGranularity.allCases, ["tiny", "fm-vit-c"])
    func foldingIsExact(granularity: AttentionMaskGranularity, model: String) throws {
        var generator = SeededGenerator(seed: 0x511 + UInt64(granularity.rawValue.count))
        let weights = model == "tiny" ? try randomWeights(Self.config(granularity: granularity), generator: &generator)
            : try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        let config = weights.config
        let batch = model == "tiny" ? 3 : 1
        let masks = Self.randomMasks(config, granularity, &generator)
        let plan = try ViTSlim.plan(masks, config: config, attention: 0.55, mlp: 0.45)
        let pruned = try Surgery.prune(ViTSlim.folded(weights, masks: masks), plan: plan)
        #expect(pruned.config.cost().macs < config.cost().macs)

        // The soft-masked full model with every entry the plan removes set to 0.
        var columns: [[Double]?] = [], hidden: [[Double]?] = []
        for (b, block) in config.blocks.enumerated() {
            let layout = QKVLayout(block)
            let indices = try #require(layout.qkvColumnIndices(granularity))
            var keptColumns = Set<Int>()
            for head in plan.blocks[b].heads where !head.vDims.isEmpty {
                for d in head.qkDims {
                    keptColumns.formUnion([layout.qRow(head: head.head, dim: d), layout.kRow(head: head.head, dim: d)])
                }
                for d in head.vDims { keptColumns.insert(layout.vRow(head: head.head, dim: d)) }
            }
            columns.append(indices.enumerated().map { column, index in
                keptColumns.contains(column) ? Double(masks.attention[b][index]) : 0 })
            let neurons = Set(plan.blocks[b].mlpHidden)
            hidden.append(masks.mlp[b].enumerated().map { neurons.contains($0) ? Double($1) : 0 })
        }
        var masked = reference(weights)
        masked.softMasks = ReferenceViT.SoftMasks(qkvColumns: columns, mlpHidden: hidden)
        let images = randomImages(config, batch: batch, generator: &generator)
        let expected = masked.logits(images.map(Double.init), batch: batch).flatMap { $0 }
        // Fold and cut in float64: the product's factors and surgery's element map, on the float64 weights.
        let factors = try ViTSlim.foldFactors(config, masks: masks)
        let sources = try Surgery.elementSources(config, plan: plan)
        var foldedDoubles: [String: [Double]] = [:]
        for spec in pruned.config.parameterSpecs() {
            let original = try #require(weights[spec.name]).values.map(Double.init)
            let folded = factors[spec.name].map { zip(original, $0).map { $0 * Double($1) } } ?? original
            foldedDoubles[spec.name] = (sources[spec.name] ?? Array(original.indices)).map { folded[$0] }
        }
        let cutReference = ReferenceViT(config: pruned.config, parameters: foldedDoubles)
        let float64 = maxDifference(cutReference.logits(images.map(Double.init), batch: batch).flatMap { $0 }, expected)
        let scale = expected.map(abs).max() ?? 1
        #expect(float64 <= 1e-9 * scale, "\(granularity) \(model): float64 error \(float64)")

        for (name, backend) in MaskedEqualsPrunedTests.backends {
            let full = try VisionTransformer(weights: weights, backend: backend)
            try full.setMasks(zip(columns, hidden).map { qkv, mlp in
                BlockMasks(qkv: ChannelMask(values: try backend.makeBuffer((qkv ?? []).map { Float($0) })),
                           mlpHidden: ChannelMask(values: try backend.makeBuffer((mlp ?? []).map { Float($0) })))
            })
            let count = batch * config.classes
            let soft = try backend.read(full.forward(images: backend.makeBuffer(images), batch: batch), count: count)
            let small = try VisionTransformer(weights: pruned, backend: backend)
            let cut = try backend.read(small.forward(images: backend.makeBuffer(images), batch: batch), count: count)
            let error = zip(soft, cut).map { abs(Double($0) - Double($1)) }.max() ?? .infinity
            #expect(error <= 1e-5 * max(scale, 1), "\(granularity) \(model) on \(name): \(error)")
        }
    }

    @Test("--target-macs is met within 2% by bisection on both module types (fm-vit-c, random masks)")
    func targetMacs() throws {
        let weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
        var generator = SeededGenerator(seed: 23)
        let masks = Self.randomMasks(weights.config, .dim, &generator)
        let context = PruningContext(original: weights, data: try MethodPlatformTests.data(), backend: CPUBackend(),
                                     budget: Budget(target: .macs(0.6)), training: TrainingPhase(epochs: 0))
        for ratio in [1.0, 0.5] {
            let slim = ViTSlim(options: .init(attentionToMLPRatio: ratio))
            let (pruned, outcome) = try slim.extract(weights, masks: masks, context: context)
            let achieved = Double(pruned.config.cost().macs) / Double(weights.config.cost().macs)
            #expect(abs(achieved - 0.6) <= 0.02 * 0.6, "ratio \(ratio): MACs kept \(achieved)")
            #expect(outcome.config == pruned.config)
        }
    }

    /// A search of 2 epochs (10 steps) on the synthetic data, cut at `keep`; no fine-tuning.
    static func pipeline(keep: (attention: Double, mlp: Double), checkpoint: String? = nil, resume: Bool = false,
                         saveSearch: String? = nil, fromSearch: String? = nil) -> PruningPipeline {
        var search = TrainingPhase(name: "slim", epochs: fromSearch == nil ? 2 : 0, batchSize: 8, learningRate: 1e-3,
                                   distill: true, augmentation: .none, seed: 5, checkpointPath: checkpoint,
                                   checkpointEvery: 1, resume: resume)
        search.stopsOnInterrupt = false
        // A strong ℓ1 so that 10 steps move the masks apart.
        var options = ViTSlim.Options(attentionPenalty: 0.05, mlpPenalty: 0.02, keepAttention: keep.attention,
                                      saveSearch: saveSearch, fromSearch: fromSearch)
        // The paper's search, which serves every budget (the default `budget` schedule pushes for one:
        // ViTSlimScheduleTests).
        options.penaltySchedule = .constant
        options.maskLearningRate = nil
        let slim = ViTSlim(options: options)
        return PruningPipeline(method: slim, budget: Budget(keepMLP: keep.mlp), batchSize: 8, methodTraining: search,
                               latencyBatches: [2], seed: 5)
    }

    static func run(_ pipeline: PruningPipeline, stopWhen: ((TrainingProgress) -> Bool)? = nil) throws
        -> PruningPipeline.Outcome {
        var generator = SeededGenerator(seed: 99)
        let original = try randomWeights(config(), generator: &generator)
        return try pipeline.run(original: original, originalPath: "original", prunedPath: "pruned",
                                data: MethodPlatformTests.data(), backend: CPUBackend(), command: "test",
                                version: "test", hooks: .init(log: { _ in }, stopWhen: stopWhen))
    }

    @Test("one search serves every budget (--from-search equals full runs at two budgets); a resumed search is identical")
    func searchThroughPipeline() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-slim-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let saved = folder.appendingPathComponent("search.safetensors").path
        let budgets = [(attention: 0.6, mlp: 0.5), (attention: 0.35, mlp: 0.3)]

        let first = try Self.run(Self.pipeline(keep: budgets[0], saveSearch: saved))
        let searched = try ViTSlim.readSearch(saved)
        #expect(searched.masks.attention.flatMap { $0 }.contains { $0 != 1 }, "the search moved no mask")
        #expect(first.report?.methodHistory?.epochs.count == 2)
        // The report's search curve (the ℓ1 term per epoch, falling) and the mask histograms.
        let curve = try #require(first.report?.methodHistory?.epochs.compactMap { $0.terms?["slim_l1"] })
        #expect(curve.count == 2 && curve[1] < curve[0], "ℓ1 by epoch: \(curve)")
        let histogram = try #require(first.report?.histograms["slim MLP masks"])
        #expect(histogram.counts.reduce(0, +) == Self.config().blocks.reduce(0) { $0 + $1.mlpHidden })
        #expect(first.weights.config.cost().macs < Self.config().cost().macs)
        for (index, keep) in budgets.enumerated() {
            let full = index == 0 ? first : try Self.run(Self.pipeline(keep: keep))
            let cut = try Self.run(Self.pipeline(keep: keep, fromSearch: saved))
            #expect(cut.weights == full.weights, "budget \(keep): --from-search differs from a full run")
        }

        let checkpoint = folder.appendingPathComponent("search.checkpoint.safetensors").path
        let stopped = try Self.run(Self.pipeline(keep: budgets[0], checkpoint: checkpoint)) { $0.step == 4 }
        #expect(stopped.stopped)
        let resumed = try Self.run(Self.pipeline(keep: budgets[0], checkpoint: checkpoint, resume: true))
        #expect(resumed.weights == first.weights, "a resumed search differs from the uninterrupted one")
    }

    @Test("the ℓ1 term: value Σ w·|z|, gradient w·sign(z) plus each value's columns' gradients")
    func sparsityTerm() throws {
        let backend = CPUBackend()
        var generator = SeededGenerator(seed: 31)
        let config = Self.config()
        let model = try VisionTransformer(weights: randomWeights(config, generator: &generator), backend: backend)
        let trainer = try TrainingPhase(epochs: 1, batchSize: 8, augmentation: .none)
            .makeTrainer(student: model.hostWeights(), teacher: model.hostWeights(),
                         training: MethodPlatformTests.data().training, backend: backend)
        let masks = try SearchMasks(trainer: trainer, granularity: .dim)
        let (wAttention, wMLP) = (0.03, 0.007)
        let term = try SparsityPenalty(masks: masks, attention: wAttention, mlp: wMLP)
        var expectedValue = 0.0
        var expected: [[Float]] = []
        for block in masks.blocks {
            let z = (0 ..< block.attention.count).map { _ in Float(generator.uniform()) }
            let columns = (0 ..< block.indices.count).map { _ in Float(generator.uniform()) }
            let zMLP = (0 ..< block.mlp.count).map { _ in Float(generator.uniform()) }
            try backend.write(z, to: block.attention)
            try backend.write(columns, to: block.columnGradient)
            try backend.write(zMLP, to: block.mlp)
            try backend.fill(block.attentionGradient, value: 0, offset: 0, count: z.count)
            try backend.fill(block.mlpGradient, value: 0, offset: 0, count: zMLP.count)
            var attention = z.map { Double(wAttention) * ($0 > 0 ? 1 : -1) }
            for (column, index) in block.indices.enumerated() { attention[index] += Double(columns[column]) }
            expected.append(attention.map { Float($0) })
            expected.append(zMLP.map { Float(wMLP) * ($0 > 0 ? 1 : -1) })
            expectedValue += wAttention * z.reduce(0) { $0 + Double(abs($1)) }
                + wMLP * zMLP.reduce(0) { $0 + Double(abs($1)) }
        }
        let value = try term.addGradient(trainer)
        #expect(abs(value - expectedValue) <= 1e-6 * expectedValue)
        let got = try masks.blocks.flatMap { [try backend.read($0.attentionGradient), try backend.read($0.mlpGradient)] }
        for (a, b) in zip(got, expected) {
            #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) })
        }
        #expect(try masks.blocks.allSatisfy { try backend.read($0.columnGradient).allSatisfy { $0 == 0 } })
    }
}
