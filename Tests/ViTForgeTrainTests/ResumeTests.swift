import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics
@testable import ViTForgeTrain

/// Checkpoint and resume: a run stopped after k steps and resumed in a fresh trainer (fresh model with other
/// weights, fresh optimizer) ends with weights bit-identical to an uninterrupted run — through a partial last batch,
/// warm-up + cosine, clipping, label smoothing and distillation.
@Suite(.serialized)
struct ResumeTests {
    static let config = tinyConfig()
    static let settings = TrainingSettings(epochs: 3, learningRate: 3e-3, minimumLearningRate: 1e-5,
                                           warmupFraction: 0.2, optimizer: AdamWSettings(weightDecay: 0.05),
                                           labelSmoothing: 0.1, gradientClipNorm: 0.5,
                                           distillation: DistillationSettings(alpha: 0.4, temperature: 2))

    /// Validation stand-in: a metric that depends on the weights (so "best" moves), computed without training.
    static func validation(_ model: VisionTransformer, _ epoch: Int) throws -> Evaluation {
        let head = try model.backend.read(#require(model.parameters["head.bias"]))
        return Evaluation(metric: Double(head[epoch % head.count]), accuracy: nil, loss: nil)
    }

    static func trainer(weightsSeed: UInt64, checkpoints: CheckpointPolicy = CheckpointPolicy(),
                        backend: any Backend = TrainTestBackends.cpu) throws -> Trainer {
        let model = try VisionTransformer(weights: randomWeights(config, seed: weightsSeed), backend: backend)
        let teacher = try VisionTransformer(weights: randomWeights(config, seed: 99), backend: backend)
        let trainer = try Trainer(model: model, batches: SyntheticBatches(config: config), settings: settings,
                                  teacher: teacher, seed: 5, checkpoints: checkpoints)
        trainer.evaluate = validation
        return trainer
    }

    /// Runs `trainer` until it has taken `step` steps, then stops it as Ctrl-C would (writing its checkpoints).
    static func run(_ trainer: Trainer, stoppingAfter step: Int) throws -> TrainingOutcome {
        trainer.onProgress = { progress in if progress.step == step { trainer.requestStop() } }
        return try trainer.run()
    }

    static func bits(_ trainer: Trainer) throws -> [String: [UInt32]] {
        try trainer.model.hostWeights().namedTensors().reduce(into: [:]) { result, tensor in
            if case let .float32(values) = tensor.values { result[tensor.name] = values.map(\.bitPattern) }
        }
    }

    @Test("stop after k steps, resume in a fresh trainer: bit-identical weights and history",
          arguments: [3, 4, 9])
    func resumeIsBitIdentical(stopAfter: Int) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let uninterrupted = try Self.trainer(weightsSeed: 1)
        let full = try uninterrupted.run()
        #expect(!full.stopped && full.history.epochs.count == 3 && uninterrupted.state.step == 12)

        let last = folder.path("last.safetensors")
        let first = try Self.trainer(weightsSeed: 1, checkpoints: CheckpointPolicy(lastPath: last))
        let partial = try Self.run(first, stoppingAfter: stopAfter)
        #expect(partial.stopped && first.state.step == stopAfter)

        // Other initial weights: everything must come from the checkpoint.
        let resumed = try Self.trainer(weightsSeed: 2, checkpoints: CheckpointPolicy(lastPath: last))
        try resumed.resume(from: last)
        #expect(resumed.state.step == stopAfter && resumed.optimizer.stepCount == stopAfter)
        let rest = try resumed.run()
        #expect(!rest.stopped)
        #expect(try Self.bits(resumed) == Self.bits(uninterrupted), "weights differ after resuming at \(stopAfter)")
        #expect(rest.history.epochs.map(\.trainLoss.bitPattern) == full.history.epochs.map(\.trainLoss.bitPattern))
        #expect(rest.history.epochs.map(\.validation) == full.history.epochs.map(\.validation))
        #expect(rest.history.bestEpoch == full.history.bestEpoch)
        #expect(resumed.random == uninterrupted.random)
    }

    @Test("a checkpoint records the CPU GEMM library; a resume on a backend set to another continues on it",
          .enabled(if: GemmLibrary.oneDNNProblem == nil && !GemmSelection.isPinnedByEnvironment))
    func gemmLibraryFollowsCheckpoint() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let uninterrupted = try Self.trainer(weightsSeed: 1, backend: CPUBackend(gemm: .pinned(.onednn)))
        _ = try uninterrupted.run()
        // The two libraries round differently here, so a resume that ignored the record would show.
        let onOpenBLAS = try Self.trainer(weightsSeed: 1, backend: CPUBackend(gemm: .pinned(.openblas)))
        _ = try onOpenBLAS.run()
        #expect(try Self.bits(onOpenBLAS) != Self.bits(uninterrupted))
        let last = folder.path("last.safetensors")
        let first = try Self.trainer(weightsSeed: 1, checkpoints: CheckpointPolicy(lastPath: last),
                                     backend: CPUBackend(gemm: .pinned(.onednn)))
        _ = try Self.run(first, stoppingAfter: 4)
        #expect(try Checkpoint.read(path: last).metadata.gemm == GemmRecord(setting: "onednn"))

        let backend = CPUBackend(gemm: .pinned(.openblas))
        let resumed = try Self.trainer(weightsSeed: 2, checkpoints: CheckpointPolicy(lastPath: last), backend: backend)
        try resumed.resume(from: last)
        #expect(backend.gemm == .pinned(.onednn))
        _ = try resumed.run()
        #expect(try Self.bits(resumed) == Self.bits(uninterrupted), "the resumed part ran on another GEMM library")
    }

    @Test("a checkpoint without a GEMM record (older files, written on OpenBLAS) resumes on OpenBLAS",
          .enabled(if: GemmLibrary.oneDNNProblem == nil && !GemmSelection.isPinnedByEnvironment))
    func checkpointWithoutGemmRecordResumesOnOpenBLAS() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let uninterrupted = try Self.trainer(weightsSeed: 1, backend: CPUBackend(gemm: .pinned(.openblas)))
        _ = try uninterrupted.run()
        let last = folder.path("last.safetensors")
        let first = try Self.trainer(weightsSeed: 1, checkpoints: CheckpointPolicy(lastPath: last),
                                     backend: CPUBackend(gemm: .pinned(.openblas)))
        _ = try Self.run(first, stoppingAfter: 4)
        // Blank the record out of the header's JSON (same length, so the file stays valid): what a checkpoint of
        // a release before the record looks like.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: last))
        let record = Data(#"\"gemm\":{\"setting\":\"openblas\"},"#.utf8)
        let range = try #require(bytes.range(of: record), "the checkpoint's header has no OpenBLAS record")
        bytes.replaceSubrange(range, with: Data(repeating: UInt8(ascii: " "), count: record.count))
        try bytes.write(to: URL(fileURLWithPath: last))
        #expect(try Checkpoint.read(path: last).metadata.gemm == nil)

        let backend = CPUBackend(gemm: .pinned(.onednn))  // today's default where oneDNN is installed
        let resumed = try Self.trainer(weightsSeed: 2, checkpoints: CheckpointPolicy(lastPath: last), backend: backend)
        try resumed.resume(from: last)
        #expect(backend.gemm == .pinned(.openblas))
        _ = try resumed.run()
        #expect(try Self.bits(resumed) == Self.bits(uninterrupted), "the resumed part ran on another GEMM library")
    }

    @Test("a checkpoint holds the model (loadable as a model file), both moments and the position")
    func checkpointContents() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let trainer = try Self.trainer(weightsSeed: 1, checkpoints: CheckpointPolicy(
            lastPath: folder.path("last.safetensors"), bestPath: folder.path("best.safetensors"), everySteps: 5))
        try trainer.optimizer.setMask("blocks.1.mlp.fc2.weight", (0 ..< 13 * 7).map { Float($0 % 2) })
        _ = try Self.run(trainer, stoppingAfter: 6)
        let checkpoint = try Checkpoint.read(path: folder.path("last.safetensors"))
        #expect(checkpoint.metadata.state.step == 6 && checkpoint.metadata.state.epoch == 1
                && checkpoint.metadata.state.batchInEpoch == 2)
        #expect(checkpoint.metadata.settings == Self.settings)
        #expect(checkpoint.metadata.state.dataSeed == "11")
        #expect(checkpoint.masks.keys.sorted() == ["blocks.1.mlp.fc2.weight"])
        #expect(checkpoint.weights == (try trainer.model.hostWeights()))
        let moments = try trainer.optimizer.hostState("blocks.0.attn.qkv.weight")
        #expect(checkpoint.firstMoments["blocks.0.attn.qkv.weight"] == moments.firstMoment)
        #expect(checkpoint.secondMoments["blocks.0.attn.qkv.weight"] == moments.secondMoment)
        // The last checkpoint also loads as a model; the best one is a plain model file.
        _ = try ViTWeights.load(path: folder.path("last.safetensors"), allowExtraTensors: true)
        let best = try ViTWeights.load(path: folder.path("best.safetensors"))
        #expect(best.config == Self.config)
    }

    @Test("resuming under other settings, other data or another model is a one-line error")
    func mismatches() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("last.safetensors")
        let trainer = try Self.trainer(weightsSeed: 1, checkpoints: CheckpointPolicy(lastPath: path))
        _ = try Self.run(trainer, stoppingAfter: 2)

        var other = Self.settings
        other.learningRate = 1e-3
        let backend = TrainTestBackends.cpu
        let model = try VisionTransformer(weights: randomWeights(Self.config, seed: 1), backend: backend)
        let teacher = try VisionTransformer(weights: randomWeights(Self.config, seed: 99), backend: backend)
        let changed = try Trainer(model: model, batches: SyntheticBatches(config: Self.config), settings: other,
                                  teacher: teacher)
        do {
            try changed.resume(from: path)
            Issue.record("resumed under another learning rate")
        } catch let error as TrainingError {
            #expect(error.description.contains("learningRate 0.003 → 0.001"), "\(error)")
            #expect(!error.description.contains("\n"))
        }

        let otherData = try Trainer(model: model, batches: SyntheticBatches(config: Self.config, seed: 12),
                                    settings: Self.settings, teacher: teacher)
        #expect(throws: TrainingError.self) { try otherData.resume(from: path) }

        var smallerConfig = Self.config
        smallerConfig.blocks[1].mlpHidden = 6
        let smaller = try VisionTransformer(weights: randomWeights(smallerConfig, seed: 1), backend: backend)
        let otherModel = try Trainer(model: smaller, batches: SyntheticBatches(config: smallerConfig),
                                     settings: Self.settings, teacher: teacher)
        #expect(throws: TrainingError.self) { try otherModel.resume(from: path) }

        #expect(throws: (any Error).self) { try trainer.resume(from: folder.path("absent.safetensors")) }
        try ViTWeights(config: Self.config, tensors: randomWeights(Self.config, seed: 1).namedTensors()
            .reduce(into: [:]) { result, tensor in
                if case let .float32(values) = tensor.values {
                    result[tensor.name] = HostTensor(shape: tensor.shape, values: values)
                }
            }).save(to: folder.path("model.safetensors"))
        do {
            try trainer.resume(from: folder.path("model.safetensors"))
            Issue.record("a plain model file resumed")
        } catch let error as TrainingError {
            #expect(error.description.contains("not a ViTForge training checkpoint"), "\(error)")
        }
    }

    @Test("the interrupt flag stops the loop before the next step, with a checkpoint")
    func interruptFlag() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("last.safetensors")
        let trainer = try Self.trainer(weightsSeed: 1, checkpoints: CheckpointPolicy(lastPath: path))
        trainer.onProgress = { progress in if progress.step == 3 { StopSignal.request() } }
        defer { StopSignal.reset() }
        let outcome = try trainer.run()
        #expect(outcome.stopped && trainer.state.step == 3)
        #expect(try Checkpoint.read(path: path).metadata.state.step == 3)
    }

    /// In this suite because `run()` reads the process-wide flag; the suite is serialized and the only one that runs.
    @Test("SIGINT raises the stop flag; the handler resets itself so a second Ctrl-C kills")
    func interruptHandler() throws {
        StopSignal.installInterruptHandler()
        #expect(!StopSignal.isRequested)
        // Process-directed, as Ctrl-C is: test worker threads block SIGINT, so `raise` would leave it pending.
        kill(getpid(), SIGINT)
        for _ in 0 ..< 200 where !StopSignal.isRequested { usleep(5000) }
        #expect(StopSignal.isRequested)
        var current = sigaction()
        sigaction(SIGINT, nil, &current)
        let handler = current.__sigaction_handler.sa_handler.map { unsafeBitCast($0, to: Int.self) } ?? 0
        #expect(handler == 0, "SA_RESETHAND restored the default action (SIG_DFL = 0)")
        StopSignal.reset()
    }

    @Test("settings that cannot train are refused")
    func badSettings() throws {
        let model = try VisionTransformer(weights: randomWeights(Self.config, seed: 1), backend: TrainTestBackends.cpu)
        for settings in [TrainingSettings(epochs: 0), TrainingSettings(epochs: 1, learningRate: -1),
                         TrainingSettings(epochs: 1, gradientClipNorm: 0),
                         TrainingSettings(epochs: 1, distillation: DistillationSettings())] {
            #expect(throws: TrainingError.self) {
                _ = try Trainer(model: model, batches: SyntheticBatches(config: Self.config), settings: settings)
            }
        }
        var wrongImages = tinyConfig()
        wrongImages.imageSize = 12
        #expect(throws: TrainingError.self) {
            _ = try Trainer(model: model, batches: SyntheticBatches(config: wrongImages),
                            settings: TrainingSettings(epochs: 1))
        }
    }
}
