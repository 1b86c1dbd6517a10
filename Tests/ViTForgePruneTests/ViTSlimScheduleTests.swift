import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport
@testable import ViTForgeTrain

/// ViT-Slim's penalty schedules (issue 28, part 4): the ramp's value per step, the `ramp` and `budget` terms' values
/// and gradients against finite differences on every backend, and a `budget` search through the pipeline (the
/// removed entries pushed apart from the kept ones, --from-search, stop and resume).
@Suite(.serialized)
struct ViTSlimScheduleTests {
    @Test("the ramp: (step + 1) / ⌊fraction · total⌋, then 1; at least one step")
    func rampValues() {
        // 10 steps, half of them ramping: 0.2, 0.4, …, 1 over steps 0-4, then 1.
        #expect((0 ..< 10).map { SlimPenaltySchedule.ramp(step: $0, totalSteps: 10, rampFraction: 0.5) }
                == [0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 1])
        // ⌊0.3 · 7⌋ = 2 steps of ramp.
        #expect((0 ..< 4).map { SlimPenaltySchedule.ramp(step: $0, totalSteps: 7, rampFraction: 0.3) } == [0.5, 1, 1, 1])
        #expect(SlimPenaltySchedule.ramp(step: 0, totalSteps: 1, rampFraction: 0.5) == 1)
        #expect(SlimPenaltySchedule.ramp(step: 468, totalSteps: 469 * 3, rampFraction: 1) == 469.0 / 1407.0)
    }

    @Test("ramp and budget terms: value and gradient match finite differences of the value, on every backend",
          arguments: [SlimPenaltySchedule.ramp, .budget], MaskedEqualsPrunedTests.backends.indices)
    func termAgainstFiniteDifferences(schedule: SlimPenaltySchedule, backendIndex: Int) throws {
        let backend = MaskedEqualsPrunedTests.backends[backendIndex].backend
        var generator = SeededGenerator(seed: 57)
        let config = ViTSlimTests.config()
        let model = try VisionTransformer(weights: randomWeights(config, generator: &generator), backend: backend)
        let trainer = try TrainingPhase(epochs: 2, batchSize: 8, augmentation: .none)
            .makeTrainer(student: model.hostWeights(), teacher: model.hostWeights(),
                         training: MethodPlatformTests.data().training, backend: backend)
        let masks = try SearchMasks(trainer: trainer, granularity: .dim)
        let (wAttention, wMLP, peak) = (0.03, 0.007, 0.25)
        let term = try SparsityPenalty(masks: masks, attention: wAttention, mlp: wMLP, schedule: schedule, peak: peak,
                                       rampFraction: 0.5)
        // A kept set that is a fixed rule of the values (the budget's threshold holds still within a step).
        term.keptSets = { values in (values.attention.map { $0.map { $0 >= 0.5 } }, values.mlp.map { $0.map { $0 >= 0.5 } }) }
        trainer.state.step = 1
        let extra = peak * SlimPenaltySchedule.ramp(step: 1, totalSteps: trainer.totalSteps, rampFraction: 0.5)
        #expect(extra > 0 && extra < peak)

        // Values away from the kinks (0 and the kept rule's 0.5) by more than the finite-difference step.
        func value() -> Float {
            let intervals: [(low: Float, high: Float)] = [(-0.45, -0.08), (0.08, 0.42), (0.58, 0.95)]
            let interval = intervals[generator.below(3)]
            return interval.low + (interval.high - interval.low) * Float(0.5 + 0.5 * generator.uniform())
        }
        var z = masks.blocks.map { block in
            (attention: (0 ..< block.attention.count).map { _ in value() }, mlp: (0 ..< block.mlp.count).map { _ in value() })
        }
        func evaluate() throws -> (value: Double, attention: [[Float]], mlp: [[Float]]) {
            for (block, values) in zip(masks.blocks, z) {
                try backend.write(values.attention, to: block.attention)
                try backend.write(values.mlp, to: block.mlp)
                try backend.fill(block.attentionGradient, value: 0, offset: 0, count: block.attention.count)
                try backend.fill(block.mlpGradient, value: 0, offset: 0, count: block.mlp.count)
                try backend.fill(block.columnGradient, value: 0, offset: 0, count: block.indices.count)
            }
            let value = try term.addGradient(trainer)
            return (value, try masks.blocks.map { try backend.read($0.attentionGradient) },
                    try masks.blocks.map { try backend.read($0.mlpGradient) })
        }
        let at = try evaluate()
        // Closed form: (w + extra on the entries it reaches)·sign(z).
        var expectedValue = 0.0
        for (b, values) in z.enumerated() {
            for (entries, gradient, w) in [(values.attention, at.attention[b], wAttention), (values.mlp, at.mlp[b], wMLP)] {
                for (zi, gi) in zip(entries, gradient) {
                    let weight = w + (schedule == .ramp || zi < 0.5 ? extra : 0)
                    expectedValue += weight * Double(abs(zi))
                    #expect(abs(Double(gi) - weight * (zi > 0 ? 1 : -1)) <= 1e-6, "z \(zi): gradient \(gi)")
                }
            }
        }
        #expect(abs(at.value - expectedValue) <= 1e-5 * expectedValue)
        // Central differences of the term's own value, entry by entry.
        let h: Float = 0.02
        for b in z.indices {
            for (isMLP, count) in [(false, z[b].attention.count), (true, z[b].mlp.count)] {
                for i in 0 ..< count {
                    func shifted(_ delta: Float) throws -> Double {
                        if isMLP { z[b].mlp[i] += delta } else { z[b].attention[i] += delta }
                        defer { if isMLP { z[b].mlp[i] -= delta } else { z[b].attention[i] -= delta } }
                        return try evaluate().value
                    }
                    let numeric = (try shifted(h) - shifted(-h)) / Double(2 * h)
                    let analytic = Double(isMLP ? at.mlp[b][i] : at.attention[b][i])
                    #expect(abs(numeric - analytic) <= 2e-3 * max(1, abs(analytic)),
                            "block \(b) \(isMLP ? "mlp" : "attention") \(i): \(numeric) vs \(analytic)")
                }
            }
        }
    }

    /// A search of 2 epochs (10 steps) at mask lr 0.1 under `schedule` with a strong extra weight and the paper's
    /// small constant weights (a strong constant ℓ1 would move every entry at Adam's speed limit alike); no
    /// fine-tuning.
    static func pipeline(_ schedule: SlimPenaltySchedule, checkpoint: String? = nil, resume: Bool = false,
                         saveSearch: String? = nil, fromSearch: String? = nil) -> PruningPipeline {
        var search = TrainingPhase(name: "slim", epochs: fromSearch == nil ? 2 : 0, batchSize: 8, learningRate: 1e-3,
                                   distill: true, augmentation: .none, seed: 5, checkpointPath: checkpoint,
                                   checkpointEvery: 1, resume: resume)
        search.stopsOnInterrupt = false
        var options = ViTSlim.Options(keepAttention: 0.6, saveSearch: saveSearch, fromSearch: fromSearch)
        options.maskLearningRate = 0.1
        options.penaltySchedule = schedule
        options.penaltyPeak = 1
        options.penaltyRampFraction = 0.3
        return PruningPipeline(method: ViTSlim(options: options), budget: Budget(keepMLP: 0.5), batchSize: 8,
                               methodTraining: search, latencyBatches: [2], seed: 5)
    }

    @Test("a budget search drives the removed entries down, apart from the kept ones; --from-search and resume agree")
    func budgetSearchThroughPipeline() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-slim-budget-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let saved = folder.appendingPathComponent("search.safetensors").path
        let budget = try ViTSlimTests.run(Self.pipeline(.budget, saveSearch: saved))
        let constant = try ViTSlimTests.run(Self.pipeline(.constant))
        func gap(_ outcome: PruningPipeline.Outcome, _ type: String) throws -> Double {
            let metrics = try #require(outcome.report?.methodMetrics)
            return try #require(metrics["\(type): kept mean"]) - #require(metrics["\(type): removed mean"])
        }
        for type in ["attention masks", "MLP masks"] {
            let metrics = try #require(budget.report?.methodMetrics)
            // Adam moves an entry by at most ≈ its learning rate per step: 10 steps under warm-up and cosine.
            #expect(try #require(metrics["\(type): removed mean"]) < 0.75, "\(type): \(metrics)")
            #expect(try gap(budget, type) > gap(constant, type) + 0.1,
                    "\(type): budget \(metrics), constant \(constant.report?.methodMetrics ?? [:])")
        }
        // The HTML report lists the separation with the method's numbers.
        let page = HTMLReport.page(try #require(budget.report))
        #expect(page.contains("the method's numbers") && page.contains("MLP masks: removed max"))
        let cut = try ViTSlimTests.run(Self.pipeline(.budget, fromSearch: saved))
        #expect(cut.weights == budget.weights, "--from-search differs from the full run")
        let checkpoint = folder.appendingPathComponent("search.checkpoint.safetensors").path
        let stopped = try ViTSlimTests.run(Self.pipeline(.budget, checkpoint: checkpoint)) { $0.step == 4 }
        #expect(stopped.stopped)
        let resumed = try ViTSlimTests.run(Self.pipeline(.budget, checkpoint: checkpoint, resume: true))
        #expect(resumed.weights == budget.weights, "a resumed budget search differs from the uninterrupted one")
    }
}
