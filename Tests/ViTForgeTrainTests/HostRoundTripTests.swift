import Foundation
import Testing
import ViTForgeDevice
import ViTForgeModel
@testable import ViTForgeTrain

/// A training step without a host round trip (issue 16): the default step makes no blocking call on its backend,
/// the loss read back later is the steps' mean, and a NaN is still caught, at the next read, naming its step.
struct HostRoundTripTests {
    static let config = tinyConfig()

    /// Backends of their own (their `blockingCalls` counters see only this test): the CPU, and the OpenCL device
    /// when there is one (the shared context keeps the kernels built once).
    static var ownBackends: [TrainBackend] {
        var list = [TrainBackend(backend: CPUBackend(threads: 1))]
        if let device = DeviceSelection.explicitChoice(from: (try? OpenCLRuntime.devices()) ?? []),
           let backend = try? OpenCLBackend(device: device) {
            list.append(TrainBackend(backend: backend))
        }
        return list
    }

    static func trainer(_ backend: any Backend, settings: TrainingSettings, teacher: Bool = false) throws -> Trainer {
        let model = try VisionTransformer(weights: randomWeights(config, seed: 3), backend: backend)
        let teacherModel = teacher ? try VisionTransformer(weights: randomWeights(config, seed: 4), backend: backend)
            : nil
        let trainer = try Trainer(model: model, batches: SyntheticBatches(config: config), settings: settings,
                                  teacher: teacherModel, seed: 1)
        trainer.stopsOnInterrupt = false
        return trainer
    }

    @Test("the default step, with distillation, with clipping: no blocking call between progress reads",
          arguments: ownBackends)
    func noBlockingCall(_ device: TrainBackend) throws {
        let backend = device.backend
        let variants: [(String, TrainingSettings, Bool)] = [
            ("cross-entropy", TrainingSettings(epochs: 2), false),
            ("distillation", TrainingSettings(epochs: 2, distillation: DistillationSettings()), true),
            ("clipping and smoothing", TrainingSettings(epochs: 2, labelSmoothing: 0.1, gradientClipNorm: 0.1), false),
        ]
        for (label, settings, teacher) in variants {
            let trainer = try Self.trainer(backend, settings: settings, teacher: teacher)
            var reports: [TrainingProgress] = []
            trainer.onProgress = { reports.append($0) }
            trainer.progressLoss = ProgressLossCadence(steps: 3)
            let before = backend.blockingCalls
            for _ in 0 ..< 2 { try trainer.step() }
            #expect(backend.blockingCalls == before, "\(label) on \(device.testDescription): steps 1-2 waited")
            try trainer.step()  // step 3 reads the loss for its report: one download
            #expect(backend.blockingCalls == before + 1, "\(label) on \(device.testDescription)")
            #expect(reports.map { $0.loss != nil } == [false, false, true])
        }
    }

    @Test("the progress loss is the mean of the steps' losses; the epoch's train loss their image-weighted mean",
          arguments: TrainTestBackends.all)
    func progressMean(_ device: TrainBackend) throws {
        let settings = TrainingSettings(epochs: 1, distillation: DistillationSettings(alpha: 0.3, temperature: 2))
        // Every step read on its own (`lastStepLoss`), against a run that reads every 3 steps and at the epoch end.
        let single = try Self.trainer(device.backend, settings: settings, teacher: true)
        var stepLosses: [Double] = []
        for _ in 0 ..< 4 {
            try single.step()
            stepLosses.append(try single.lastStepLoss().total)
        }
        let windowed = try Self.trainer(device.backend, settings: settings, teacher: true)
        windowed.progressLoss = ProgressLossCadence(steps: 3)
        var reported: [Double?] = []
        windowed.onProgress = { reported.append($0.loss) }
        let history = try windowed.run().history
        try #require(reported.count == 4)
        let firstMean = stepLosses[0 ..< 3].reduce(0, +) / 3
        #expect(reported[0] == nil && reported[1] == nil && reported[3] != nil)
        #expect(abs(try #require(reported[2]) - firstMean) <= 1e-12 * firstMean)
        #expect(abs(try #require(reported[3]) - stepLosses[3]) <= 1e-12 * stepLosses[3])
        // SyntheticBatches: 5, 5, 5, 3 images.
        let images = [5.0, 5, 5, 3]
        let epochMean = zip(stepLosses, images).map { $0 * $1 }.reduce(0, +) / images.reduce(0, +)
        let trainLoss = try #require(history.epochs.first?.trainLoss)
        #expect(abs(trainLoss - epochMean) <= 1e-12 * epochMean, "\(trainLoss) vs \(epochMean)")
    }

    @Test("a NaN weight after step 2: caught at the read after step 3, naming step 3, the range and the parameter",
          arguments: TrainTestBackends.all)
    func nanAtNextRead(_ device: TrainBackend) throws {
        let trainer = try Self.trainer(device.backend, settings: TrainingSettings(epochs: 2))
        trainer.hooks = [NonFiniteGuardTests.Poison(step: 2, parameter: "blocks.0.attn.proj.weight", value: .nan)]
        trainer.progressLoss = ProgressLossCadence(steps: 100)
        var reports = 0
        trainer.onProgress = { _ in reports += 1 }
        #expect {
            _ = try trainer.run()
        } throws: { error in
            let text = "\(error)"
            return text.contains("loss is nan at step 3 (epoch 1, batch 3), the first non-finite one of steps 1–4")
                && text.contains("parameter blocks.0.attn.proj.weight holds nan") && !text.contains("\n")
        }
        // Caught by step 4's report (the epoch's end), the first read; steps 3 and 4 updated nothing: the weights
        // are those of 2 clean steps, but for the poisoned element.
        #expect(reports == 3 && trainer.state.step == 4)
        let clean = try Self.trainer(device.backend, settings: TrainingSettings(epochs: 2))
        for _ in 0 ..< 2 { try clean.step() }
        let failed = try trainer.model.hostWeights(), expected = try clean.model.hostWeights()
        for tensor in expected.namedTensors() {
            var values = try #require(expected[tensor.name]).values
            if tensor.name == "blocks.0.attn.proj.weight" { values[values.count / 2] = .nan }
            #expect(try #require(failed[tensor.name]).values.map(\.bitPattern) == values.map(\.bitPattern),
                    "\(tensor.name) changed after the bad step")
        }
    }
}
