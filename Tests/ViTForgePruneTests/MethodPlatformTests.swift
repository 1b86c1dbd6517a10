import Foundation
import Testing
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTestBasics
import ViTForgeTestSupport
import ViTForgeTrain

/// A method written only against the platform's seams, as ViT-Slim, Vulcan and CPD will be: a penalty weighted by
/// a learned multiplier (an ascending optimizer slot), a per-step hook with checkpointed state that shrinks the
/// model mid-run (one lowest-norm MLP neuron per block every `interval` steps, until `neuronsToRemove` are gone), all
/// inside its own training phase; no change to the trainer or the pipeline.
struct ShrinkWhileTraining: PruningMethod {
    static let name = "test-shrink"
    static let summary = "test method: removes MLP neurons while it trains, under a multiplier-weighted penalty"
    static let hasTrainingPhase = true
    var interval = 3
    var neuronsToRemove = 2

    /// λ·c·Σ‖fc1‖² over every block; dλ = c·Σ‖fc1‖² (λ ascends), dW = 2cλ·W.
    final class Penalty: TrainingTerm {
        let name = "penalty"
        let lambda: Buffer, lambdaGradient: Buffer
        let coefficient = 1e-3

        init(backend: Backend) throws {
            lambda = try backend.makeBuffer([Float(1)])
            lambdaGradient = try backend.zeros(1)
        }

        func addGradient(_ trainer: Trainer) throws -> Double {
            let model = trainer.model, backend = model.backend
            let value = Double(try backend.read(lambda, count: 1)[0])
            var squaredNorm = 0.0
            for b in model.config.blocks.indices {
                let name = "blocks.\(b).mlp.fc1.weight"
                guard let w = model.parameters[name], let dw = model.gradients[name] else { continue }
                squaredNorm += try backend.sumOfSquares(w, count: w.count)
                try backend.axpy(alpha: Float(2 * coefficient * value), x: w, y: dw, count: w.count)
            }
            try backend.write([Float(coefficient * squaredNorm)], to: lambdaGradient)
            return value * coefficient * squaredNorm
        }
    }

    final class Schedule: TrainingHook {
        let name = "schedule"
        let changesShape = true
        let interval: Int, neuronsToRemove: Int
        var removed = 0

        init(interval: Int, neuronsToRemove: Int) {
            self.interval = interval
            self.neuronsToRemove = neuronsToRemove
        }

        func afterStep(_ trainer: Trainer) throws {
            guard trainer.state.step % interval == 0, removed < neuronsToRemove else { return }
            let weights = try trainer.model.hostWeights()
            let config = weights.config
            var plan = KeepPlan(keepingAllOf: config)
            for (b, block) in config.blocks.enumerated() {
                let space = try #require(config.channelSpaces().first { $0.kind == .mlpHidden(block: b) })
                let scores = Importance.magnitude(space, weights: weights, norm: .l2)
                let weakest = try #require(scores.indices.min { scores[$0] < scores[$1] })
                try plan.keep((0 ..< block.mlpHidden).filter { $0 != weakest }, in: .mlpHidden(block: b), of: config)
            }
            try trainer.replaceModel(with: Surgery.prune(weights, plan: plan),
                                     elementSources: Surgery.elementSources(config, plan: plan))
            removed += 1
        }

        func checkpointState() throws -> HookState { HookState(json: String(removed)) }

        func restore(_ state: HookState, trainer: Trainer) throws { removed = try #require(Int(state.json)) }
    }

    func prune(_ context: PruningContext) throws -> MethodOutcome {
        let trainer = try context.training.makeTrainer(student: context.original, teacher: context.original,
                                                       training: context.data.training, backend: context.backend)
        let penalty = try Penalty(backend: context.backend)
        try trainer.optimizer.addSlot(name: "lambda", shape: [1], parameter: penalty.lambda,
                                      gradient: penalty.lambdaGradient, learningRateScale: -1)
        trainer.terms = [penalty]
        trainer.hooks = [Schedule(interval: interval, neuronsToRemove: neuronsToRemove)]
        let stopped = try context.train(trainer)
        let weights = try trainer.model.hostWeights()
        return MethodOutcome(weights: weights, outcome: BudgetOutcome(original: context.original.config,
                                                                      pruned: weights.config),
                             stopped: stopped, history: trainer.state.history)
    }
}

@Suite(.serialized)
struct MethodPlatformTests {
    static let config = ViTConfig(imageSize: 9, patchSize: 3, inChannels: 1, classes: 5, residualWidth: 13,
                                  blocks: [BlockConfig(heads: 2, qkDim: 3, vDim: 5, mlpHidden: 11),
                                           BlockConfig(heads: 3, qkDim: 4, vDim: 2, mlpHidden: 7)],
                                  qkvBias: true, pooling: .token, classToken: true)

    /// 37 random 9×9 grey images in 5 classes, as training and test split.
    static func data() throws -> DatasetSplits {
        var generator = SeededGenerator(seed: 77)
        let count = 37
        let pixels = (0 ..< count * 81).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let labels = (0 ..< count).map { UInt8($0 % 5) }
        let store = ImageStore(LabeledImages(count: count, height: 9, width: 9, pixels: pixels, labels: labels),
                               origin: "synthetic")
        let dataset = try Dataset(store: store, preparation: ImagePreparation(channels: 1, side: 9), name: "synthetic")
        return DatasetSplits(training: dataset, test: dataset)
    }

    /// The ResumeTests' interrupt test raises the process-wide Ctrl-C flag while this suite may be training in the
    /// same test process: these phases ignore it and stop on `stopWhen` instead.
    static func pipeline(checkpoint: String, resume: Bool = false) -> PruningPipeline {
        var methodTraining = TrainingPhase(name: "test-shrink", epochs: 2, batchSize: 8, learningRate: 1e-3,
                                           distill: true, augmentation: .none, seed: 3, checkpointPath: checkpoint,
                                           checkpointEvery: 1, resume: resume)
        methodTraining.stopsOnInterrupt = false
        var fineTuning = TrainingPhase(epochs: 1, batchSize: 8, augmentation: .none, seed: 3)
        fineTuning.stopsOnInterrupt = false
        return PruningPipeline(method: ShrinkWhileTraining(), budget: Budget(keepMLP: 1), batchSize: 8,
                               methodTraining: methodTraining, fineTuning: fineTuning, latencyBatches: [2], seed: 3)
    }

    @Test("Surgery.elementSources maps every pruned element to its original", arguments: Variant.allCases)
    func elementSources(variant: Variant) throws {
        var generator = SeededGenerator(seed: 0x5EED ^ variant.rawValue.hashStable)
        let config = irregularConfig(variant)
        let weights = try randomWeights(config, generator: &generator)
        let plan = try SurgeryInvariantTests.randomPlan(config, .all, generator: &generator)
        let pruned = try Surgery.prune(weights, plan: plan)
        let sources = try Surgery.elementSources(config, plan: plan)
        for spec in pruned.config.parameterSpecs() {
            let original = try #require(weights[spec.name]).values
            let map = sources[spec.name] ?? Array(original.indices)
            #expect(try #require(pruned[spec.name]).values == map.map { original[$0] }, "\(spec.name)")
        }
    }

    @Test("a method with a penalty, a multiplier, a shrinking hook and its own phase, through the pipeline; stop and resume: bit-identical")
    func trainingMethodThroughPipeline() throws {
        let backend = CPUBackend()
        let data = try Self.data()
        var generator = SeededGenerator(seed: 5)
        let original = try randomWeights(Self.config, generator: &generator)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-platform-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func run(_ pipeline: PruningPipeline, stopWhen: ((TrainingProgress) -> Bool)? = nil) throws
            -> PruningPipeline.Outcome {
            try pipeline.run(original: original, originalPath: "original", prunedPath: "pruned", data: data,
                             backend: backend, command: "test", version: "test",
                             hooks: .init(log: { _ in }, stopWhen: stopWhen))
        }

        let full = try run(Self.pipeline(checkpoint: folder.appendingPathComponent("a").path))
        #expect(!full.stopped)
        // 37 images in batches of 8: 5 steps per epoch, 10 steps, a neuron per block removed at steps 3 and 6.
        #expect(full.weights.config.blocks.map(\.mlpHidden) == [9, 5])
        let report = try #require(full.report)
        #expect(report.epochs == 2 && report.methodHistory?.epochs.count == 2 && report.distill)

        let checkpoint = folder.appendingPathComponent("b").path
        let interrupted = try run(Self.pipeline(checkpoint: checkpoint)) { $0.step == 7 }
        #expect(interrupted.stopped && interrupted.report == nil)
        let resumed = try run(Self.pipeline(checkpoint: checkpoint, resume: true))
        #expect(!resumed.stopped)
        #expect(resumed.weights == full.weights, "resumed run differs from the uninterrupted one")
    }
}
