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
    static func pipeline(checkpoint: String, resume: Bool = false) throws -> PruningPipeline {
        var methodTraining = TrainingPhase(name: "test-shrink", epochs: 2, batchSize: 8, learningRate: 1e-3,
                                           distill: true, augmentation: .none, seed: 3, checkpointPath: checkpoint,
                                           checkpointEvery: 1, resume: resume)
        methodTraining.stopsOnInterrupt = false
        var fineTuning = TrainingPhase(epochs: 1, batchSize: 8, augmentation: .none, seed: 3)
        fineTuning.stopsOnInterrupt = false
        // The method as `prune --method test-shrink` would get it: from the registry its folder joined.
        let registry = try TestMethodRegistry.parse([])
        let method = try #require(registry.group(for: ShrinkWhileTraining.name)).method(named: ShrinkWhileTraining.name)
        return PruningPipeline(method: method, budget: Budget(keepMLP: 1), batchSize: 8,
                               methodTraining: methodTraining, fineTuning: fineTuning, latencyBatches: [2], seed: 3)
    }

    @Test("a method joins the registry with one line: after every built-in method, served by its flagless group")
    func registryLine() throws {
        #expect(TestMethodRegistry.methods.map { $0.name } == PruningMethods.names + [ShrinkWhileTraining.name])
        let registry = try TestMethodRegistry.parse([])
        #expect(registry.group(for: ShrinkWhileTraining.name) is NoMethodFlags<ShrinkWhileTraining>)
        for name in PruningMethods.names {
            let group = try #require(registry.group(for: name), "\(name)")
            #expect(try group.method(named: name).name == name)
        }
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
