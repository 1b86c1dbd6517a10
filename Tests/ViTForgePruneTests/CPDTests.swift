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

/// CPD (METHODS.md §4): the groups its rules derive, its Fisher score, pruning inside training, resume.
@Suite(.serialized)
struct CPDTests {
    // MARK: Comb

    /// The groups §4 predicts for a ViT, written out by hand from the timm layout: one residual group spanning
    /// every block, and per block a q/k group, a v group and an MLP group.
    static func expectedGroups(_ config: ViTConfig) -> [String: (carriers: Set<String>, consumers: Set<String>)] {
        var residual: Set<String> = ["pos_embed[2]", "patch_embed.proj.weight[0]", "patch_embed.proj.bias[0]",
                                     "\(config.finalNormName).weight[0]", "\(config.finalNormName).bias[0]"]
        if config.classToken { residual.insert("cls_token[2]") }
        if config.distillationToken { residual.insert("dist_token[2]") }
        var consumers: Set<String> = ["head.weight[1]"]
        if config.distillationToken { consumers.insert("head_dist.weight[1]") }
        var groups: [String: (Set<String>, Set<String>)] = [:]
        for b in config.blocks.indices {
            let p = "blocks.\(b)."
            residual.formUnion([p + "norm1.weight[0]", p + "norm1.bias[0]", p + "attn.proj.weight[0]",
                                p + "attn.proj.bias[0]", p + "norm2.weight[0]", p + "norm2.bias[0]",
                                p + "mlp.fc2.weight[0]", p + "mlp.fc2.bias[0]"])
            consumers.formUnion([p + "attn.qkv.weight[1]", p + "mlp.fc1.weight[1]"])
            let bias = config.qkvBias
            groups[p + "qkDims"] = (Set([p + "attn.qkv.weight[0:q]", p + "attn.qkv.weight[0:k]"]
                                        + (bias ? [p + "attn.qkv.bias[0:q]", p + "attn.qkv.bias[0:k]"] : [])), [])
            groups[p + "vDims"] = (Set([p + "attn.qkv.weight[0:v]"] + (bias ? [p + "attn.qkv.bias[0:v]"] : [])),
                                   [p + "attn.proj.weight[1]"])
            groups[p + "mlpHidden"] = ([p + "mlp.fc1.weight[0]", p + "mlp.fc1.bias[0]"], [p + "mlp.fc2.weight[1]"])
        }
        groups["residual"] = (residual, consumers)
        return groups
    }

    @Test("the groups derived by CPD's rules are exactly the expected list (fm-vit-b, fm-vit-c, irregular models)")
    func derivedGroups() throws {
        var configs = [try ViTWeights.load(path: fixture("fm-vit-b.safetensors"), heads: 4).config,
                       try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 3).config]
        configs += Variant.allCases.map(irregularConfig)
        for config in configs {
            let derived = try Comb.groups(of: config)
            let expected = Self.expectedGroups(config)
            #expect(derived.count == expected.count, "\(derived.map(\.name))")
            #expect(derived.first?.name == "residual")
            for group in derived {
                let want = try #require(expected[group.name], "unexpected group \(group.name)")
                #expect(Set(group.carriers.map(\.description)) == want.carriers, "\(group.name) out_group")
                #expect(Set(group.consumers.map(\.description)) == want.consumers, "\(group.name) out_in_group")
            }
            // And the role table every other piece of pruning uses partitions the axes the same way.
            try config.checkRoleTableAgainstComb()
        }
    }

    // MARK: Fisher score

    /// The parameters of `weights` widened, with every slice of `group` scaled by `factor`.
    static func scaled(_ weights: ViTWeights, _ group: ChannelGroup, by factor: Double) -> [String: [Double]] {
        var result: [String: [Double]] = [:]
        for spec in weights.config.parameterSpecs() { result[spec.name] = weights[spec.name]?.values.map(Double.init) }
        for slice in group.slices {
            guard let shape = weights[slice.tensor]?.shape else { continue }
            Importance.forEachElement(of: slice, shape: shape) { result[slice.tensor]?[$0] *= factor }
        }
        return result
    }

    @Test("the Fisher score is the squared finite-difference derivative of a channel mask (float64 reference)",
          arguments: [Variant.tokenPooling, .distilled])
    func fisherMatchesFiniteDifferences(variant: Variant) throws {
        var generator = SeededGenerator(seed: 0xF15 ^ variant.rawValue.hashStable)
        let config = irregularConfig(variant)
        let weights = try randomWeights(config, generator: &generator)
        let batch = 3
        let images = randomImages(config, batch: batch, generator: &generator)
        let labels = [1, 4, 2]
        // One group of each kind CPD removes: an MLP neuron, a q/k dim, a v dim, a residual channel.
        let spaces = try config.channelSpaces()
        let picks: [(SpaceKind, Int)] = [(.mlpHidden(block: 1), 5), (.qkDims(block: 0), 6), (.vDims(block: 3), 4),
                                         (.residual, 7)]
        var expected: [Double] = []
        for (kind, index) in picks {
            let group = try #require(spaces.first { $0.kind == kind }?.groups[index])
            let epsilon = 1e-5
            let plus = reference(weights, overrides: Self.scaled(weights, group, by: 1 + epsilon))
            let minus = reference(weights, overrides: Self.scaled(weights, group, by: 1 - epsilon))
            let pixels = images.map(Double.init)
            expected.append((plus.loss(pixels, labels: labels, batch: batch)
                             - minus.loss(pixels, labels: labels, batch: batch)) / (2 * epsilon))
        }
        for (name, backend) in MaskedEqualsPrunedTests.backends {
            let model = try VisionTransformer(weights: weights, backend: backend)
            try model.zeroGradients()
            _ = try model.crossEntropy(images: backend.makeBuffer(images),
                                       labels: backend.makeBuffer(labels.map(Int32.init)), batch: batch,
                                       backward: true)
            let scores = try FisherScores(config: config, backend: backend)
            let derivatives = try scores.maskDerivatives(of: model)
            try scores.accumulate(model)
            for ((kind, index), want) in zip(picks, expected) {
                let got = try #require(derivatives[kind])[index]
                #expect(abs(got - want) <= 2e-3 * abs(want) + 1e-6, "\(name) \(kind) \(index): \(got) vs \(want)")
                #expect(scores.accumulated[kind]?[index] == got * got, "\(name): the score is the square")
            }
        }
    }

    // MARK: Pruning inside training

    static let config = ViTConfig(imageSize: 9, patchSize: 3, inChannels: 1, classes: 5, residualWidth: 13,
                                  blocks: [BlockConfig(heads: 2, qkDim: 3, vDim: 5, mlpHidden: 11),
                                           BlockConfig(heads: 3, qkDim: 4, vDim: 2, mlpHidden: 7)],
                                  qkvBias: true, pooling: .token, classToken: true)

    static let options = CPD.Options(pruneInterval: 5, mlpStep: 2, residualStep: 2, finishFraction: 0.75,
                                     validationFraction: 0.2)

    static func phase(checkpoint: String? = nil, resume: Bool = false, distill: Bool = true) -> TrainingPhase {
        var phase = TrainingPhase(name: "cpd", epochs: 4, batchSize: 8, learningRate: 1e-3, distill: distill,
                                  augmentation: .none, seed: 11, checkpointPath: checkpoint, checkpointEvery: 1,
                                  resume: resume)
        phase.stopsOnInterrupt = false
        return phase
    }

    /// Trains until step `until` (or the end); the trainer can run on afterwards.
    static func train(_ trainer: Trainer, until: Int) throws {
        trainer.onProgress = { [unowned trainer] in if $0.step == until { trainer.requestStop() } }
        _ = try trainer.run()
    }

    @Test("pruning at step k and training on equals training the 0/1-masked model from step k (10 steps)",
          arguments: [0, 1])
    func prunedEqualsMaskedTraining(backendIndex: Int) throws {
        guard backendIndex < MaskedEqualsPrunedTests.backends.count else { return }  // no OpenCL device here
        let (name, backend) = MaskedEqualsPrunedTests.backends[backendIndex]
        var generator = SeededGenerator(seed: 0xC9D)
        let original = try randomWeights(Self.config, generator: &generator)
        let data = try MethodPlatformTests.data().training
        let cutStep = 5
        // One cut, at step 5, straight to 60% of the MACs (the window ends there).
        let pruning = try Self.phase(distill: false).makeTrainer(student: original, teacher: original,
                                                                 training: data, backend: backend)
        let pruner = try CPD.GradualPruner(original: Self.config, budget: Budget(target: .macs(0.6)),
                                           options: Self.options, deadline: cutStep, latency: nil, backend: backend,
                                           log: { _ in })
        pruning.hooks = [pruner]
        try Self.train(pruning, until: cutStep + 10)
        #expect(pruner.events.count == 1 && pruner.reached)
        #expect(pruning.model.config != Self.config)
        // Every kind of space was cut somewhere, or the test would not cover it.
        let removed = pruner.events.flatMap(\.removed).joined(separator: " ")
        #expect(removed.contains("mlpHidden") || removed.contains("Dims") || removed.contains("residual"))

        let masked = try Self.phase(distill: false).makeTrainer(student: original, teacher: original,
                                                                training: data, backend: backend)
        try Self.train(masked, until: cutStep)
        let masks = try pruner.kept.channelMasks(of: Self.config, backend: backend)
        try masked.model.setMasks(masks.blocks, residual: masks.residual)
        try Self.train(masked, until: cutStep + 10)

        let images = randomImages(Self.config, batch: 4, generator: &generator)
        let count = 4 * Self.config.classes
        let expected = try backend.read(masked.model.forward(images: backend.makeBuffer(images), batch: 4),
                                        count: count)
        let got = try backend.read(pruning.model.forward(images: backend.makeBuffer(images), batch: 4), count: count)
        let scale = expected.map { abs(Double($0)) }.max() ?? 1
        let error = zip(got, expected).map { abs(Double($0) - Double($1)) }.max() ?? .infinity
        #expect(error <= 1e-5 * scale, "\(name): logits differ by \(error) (scale \(scale))")
        // The kept weights themselves, too — but for the k bias: softmax ignores a shift shared by all keys, so
        // its true gradient is 0 and AdamW moves it by rounding noise, differently in the two runs.
        let maskedWeights = try Surgery.prune(try masked.model.hostWeights(), plan: pruner.kept)
        let prunedWeights = try pruning.model.hostWeights()
        for spec in prunedWeights.config.parameterSpecs() {
            var a = try #require(prunedWeights[spec.name]).values, b = try #require(maskedWeights[spec.name]).values
            if spec.name.hasSuffix("attn.qkv.bias"), let block = Int(spec.name.split(separator: ".")[1]) {
                let layout = QKVLayout(prunedWeights.config.blocks[block])
                a.removeSubrange(layout.totalQK ..< 2 * layout.totalQK)
                b.removeSubrange(layout.totalQK ..< 2 * layout.totalQK)
            }
            let scale = b.map { abs(Double($0)) }.max() ?? 1
            let difference = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
            #expect(difference <= 1e-5 * max(scale, 1e-3), "\(name) \(spec.name): \(difference)")
        }
    }

    static func pipeline(checkpoint: String, resume: Bool = false, rounding: WidthRounding? = nil) -> PruningPipeline {
        PruningPipeline(method: CPD(options: options), budget: Budget(target: .macs(0.55), rounding: rounding),
                        batchSize: 8,
                        methodTraining: phase(checkpoint: checkpoint, resume: resume), latencyBatches: [2],
                        seed: 11)
    }

    @Test("through the pipeline: cuts at steps 5 and 10 reach the target, the report has them; kill and resume mid-pruning: bit-identical")
    func killAndResume() throws {
        var generator = SeededGenerator(seed: 0xC9E)
        let original = try randomWeights(Self.config, generator: &generator)
        let data = try MethodPlatformTests.data()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-cpd-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func run(_ pipeline: PruningPipeline, stopWhen: ((TrainingProgress) -> Bool)? = nil) throws
            -> PruningPipeline.Outcome {
            try pipeline.run(original: original, originalPath: "original", prunedPath: "pruned", data: data,
                             backend: CPUBackend(), command: "test", version: "test",
                             hooks: .init(log: { _ in }, stopWhen: stopWhen))
        }
        let full = try run(Self.pipeline(checkpoint: folder.appendingPathComponent("a").path))
        let report = try #require(full.report)
        let steps = try #require(report.pruningSteps)
        // 37 images, 20% held out: 30 in batches of 8, 4 steps an epoch, 16 steps; the window ends at step 12.
        #expect(steps.map(\.step) == [5, 10])
        #expect(report.macsFraction <= 0.55)
        #expect(steps.last?.macs == report.pruned.macs)

        let checkpoint = folder.appendingPathComponent("b").path
        let interrupted = try run(Self.pipeline(checkpoint: checkpoint)) { $0.step == 7 }
        #expect(interrupted.stopped)
        let resumed = try run(Self.pipeline(checkpoint: checkpoint, resume: true))
        #expect(!resumed.stopped)
        #expect(resumed.weights == full.weights, "resumed run differs from the uninterrupted one")
        #expect(resumed.report?.pruningSteps == steps)
    }

    /// Where one cut of `step` takes a space of `width` (the cut's size) from `left`, written out per rounding
    /// from the rule's words: --round-to 1 is CPD's own step (`min(step, left − floor)` removed).
    static func cutWidth(_ left: Int, step: Int, floor: Int, width: Int, kind: SpaceKind,
                          rounding: WidthRounding) -> Int {
        switch rounding {
        case .multiple(1): return left - min(step, left - floor)
        case .multiple(let k): return width <= k ? width : max(floor, max(k, (left - step) / k * k))
        case .table(let loaded):
            return max(floor, WidthRounding.fastestWidth(asked: max(1, left - step)) {
                loaded.table.milliseconds(kind, width: $0)
            })
        }
    }

    @Test("--round-to: each block a cut removes lands its space on the rounded width (K, a table); 1 is CPD's step")
    func roundedCuts() throws {
        let config = try LatencyTableTests.fmVitB.get()  // 4 blocks of 4 heads × 32/32, MLP 256, width 128
        let options = CPD.Options(pruneInterval: 5, mlpStep: 32, residualStep: 4)
        let floors = CPD.Schedule.floors(config, options: options)
        let table = try LatencyTableTests.syntheticTable(config) { $0 % 12 == 0 ? 1 : 1.5 }
        let tabled = WidthRounding.table(LoadedLatencyTable(table: table, path: "t.json", hash: "h"))
        var generator = SeededGenerator(seed: 0xC0D)
        // The residual dearer than the rest, so that the cuts reach the blocks' spaces many times.
        var scores: [SpaceKind: [Double]] = [.residual: (0 ..< 128).map { _ in 10 + abs(generator.uniform()) }]
        for (b, block) in config.blocks.enumerated() {
            scores[.mlpHidden(block: b)] = (0 ..< block.mlpHidden).map { _ in abs(generator.uniform()) }
            scores[.qkDims(block: b)] = (0 ..< block.heads * 32).map { _ in abs(generator.uniform()) * 8 }
            scores[.vDims(block: b)] = (0 ..< block.heads * 32).map { _ in abs(generator.uniform()) * 8 }
        }
        var offEights = 0
        for rounding in [WidthRounding.multiple(1), .multiple(8), tabled] {
            var selection = CPD.Selection(config: config, scores: scores, options: options, floors: floors,
                                          rounding: rounding)
            var before = config
            for cut in 0 ..< 60 {
                guard let removed = selection.cheapest() else { break }
                let after = try selection.plan().prunedConfig(of: config)
                func expect(_ old: Int, _ new: Int, step: Int, floor: Int, width: Int, _ kind: SpaceKind) {
                    guard new != old else { return }
                    let wanted = Self.cutWidth(old, step: step, floor: floor, width: width, kind: kind,
                                              rounding: rounding)
                    #expect(new == wanted, "\(rounding.summary) cut \(cut) (\(removed)) \(kind): \(old) → \(new)")
                    if case .table = rounding, new % 8 != 0, new != floor { offEights += 1 }
                }
                expect(before.residualWidth, after.residualWidth, step: 4, floor: floors.residual, width: 128, .residual)
                for b in config.blocks.indices {
                    expect(before.blocks[b].mlpHidden, after.blocks[b].mlpHidden, step: 32, floor: floors.mlp[b],
                           width: 256, .mlpHidden(block: b))
                    for (kind, old, new) in [(SpaceKind.qkDims(block: b), before.blocks[b].qkDims, after.blocks[b].qkDims),
                                             (.vDims(block: b), before.blocks[b].vDims, after.blocks[b].vDims)] {
                        for (o, n) in zip(old, new) { expect(o, n, step: 1, floor: 1, width: 32, kind) }
                    }
                }
                #expect(after != before, "cut \(cut) changed nothing")
                before = after
            }
            #expect(before.cost().macs < config.cost().macs * 17 / 20, "\(rounding.summary): the cuts went far enough")
        }
        #expect(offEights > 0, "the made-up table should land some space off the multiples of 8")
        // The smallest model follows the rounding: 8 dims a head with --round-to 8, 1 without.
        let eights = try CPD.Schedule.smallest(config, options: options, rounding: .multiple(8))
        let ones = try CPD.Schedule.smallest(config, options: options)
        #expect(eights.blocks.allSatisfy { $0.qkDims == [8, 8, 8, 8] && $0.vDims == [8, 8, 8, 8] && $0.mlpHidden == 32 })
        #expect(ones.blocks.allSatisfy { $0.qkDims == [1, 1, 1, 1] && $0.vDims == [1, 1, 1, 1] && $0.mlpHidden == 32 })
        #expect(eights.residualWidth == 8 && ones.residualWidth == 8)
    }

    @Test("--round-to table through the pipeline: the target is reached and every width is one the table's cuts land on")
    func tableRoundedRun() throws {
        var generator = SeededGenerator(seed: 0xC9E)
        let original = try randomWeights(Self.config, generator: &generator)
        // Multiples of 3 cost 1 per channel, any other width 1.5.
        let table = try LatencyTableTests.syntheticTable(Self.config) { $0 % 3 == 0 ? 1 : 1.5 }
        let rounding = WidthRounding.table(LoadedLatencyTable(table: table, path: "t.json", hash: "h"))
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let outcome = try Self.pipeline(checkpoint: folder.path("c"), rounding: rounding).run(
            original: original, originalPath: "original", prunedPath: "pruned", data: MethodPlatformTests.data(),
            backend: CPUBackend(), command: "test", version: "test", hooks: .init(log: { _ in }))
        let report = try #require(outcome.report)
        #expect(report.macsFraction <= 0.55 && !(report.pruningSteps ?? []).isEmpty)
        #expect(report.latencyTable?.path == "t.json")
        // Each width is on the chain of cuts from the original width (or the original).
        let floors = CPD.Schedule.floors(Self.config, options: Self.options)
        func chain(_ width: Int, step: Int, floor: Int, _ kind: SpaceKind) -> Set<Int> {
            var widths: Set<Int> = [width], current = width
            while true {
                let next = Self.cutWidth(current, step: step, floor: floor, width: current, kind: kind,
                                          rounding: rounding)
                guard next < current else { return widths }
                widths.insert(next)
                current = next
            }
        }
        let pruned = outcome.weights.config
        var moved = false
        for (b, block) in Self.config.blocks.enumerated() {
            let mlp = chain(block.mlpHidden, step: 2, floor: floors.mlp[b], .mlpHidden(block: b))
            let qk = chain(block.qkDims[0], step: 1, floor: 1, .qkDims(block: b))
            let v = chain(block.vDims[0], step: 1, floor: 1, .vDims(block: b))
            #expect(mlp.contains(pruned.blocks[b].mlpHidden), "block \(b) MLP \(pruned.blocks[b].mlpHidden) ∉ \(mlp)")
            #expect(pruned.blocks[b].qkDims.allSatisfy(qk.contains) && pruned.blocks[b].vDims.allSatisfy(v.contains),
                    "block \(b): \(pruned.blocks[b].qkDims)/\(pruned.blocks[b].vDims) ∉ \(qk)/\(v)")
            moved = moved || pruned.blocks[b].mlpHidden != block.mlpHidden
        }
        #expect(moved)
    }

    @Test("an unreachable target is refused before any training; keep fractions are refused")
    func budgetChecks() throws {
        let cpd = CPD(options: Self.options)
        #expect(throws: PruneError.self) { try cpd.checkReach(Budget(target: .macs(0.01)), config: Self.config) }
        try cpd.checkReach(Budget(target: .macs(0.5)), config: Self.config)
        #expect(cpd.problem(with: Budget(keepMLP: 0.5), epochs: 2) != nil)
        #expect(cpd.problem(with: Budget(target: .macs(0.5)), epochs: 0) != nil)
        #expect(cpd.problem(with: Budget(target: .macs(0.5)), epochs: 2) == nil)
    }
}
