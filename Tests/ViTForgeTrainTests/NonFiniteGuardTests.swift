import Foundation
import Testing
import ViTForgeDevice
import ViTForgeModel
import ViTForgeTestBasics
@testable import ViTForgeTrain

/// The NaN/Inf guard: a run whose loss or weights stop being finite ends with an error naming the step and the
/// tensor, and the checkpoint on disk stays the last finite one (it resumes).
struct NonFiniteGuardTests {
    static let config = tinyConfig()

    /// After step `step`, overwrites one element of `parameter` with `value` (a diverging update, on demand).
    final class Poison: TrainingHook {
        let name = "poison"
        let step: Int, parameter: String, value: Float
        init(step: Int, parameter: String, value: Float) {
            self.step = step
            self.parameter = parameter
            self.value = value
        }
        func afterStep(_ trainer: Trainer) throws {
            guard trainer.state.step == step else { return }
            var values = try #require(trainer.model.hostWeights()[parameter]).values
            values[values.count / 2] = value
            try trainer.model.setParameter(parameter, values)
        }
    }

    /// A loss term that becomes `value` at step `step` (1-based, the step being taken) and adds no gradient.
    final class BadTerm: TrainingTerm {
        let name = "bad"
        let step: Int, value: Double
        init(step: Int, value: Double) {
            self.step = step
            self.value = value
        }
        func addGradient(_ trainer: Trainer) throws -> Double { trainer.state.step + 1 == step ? value : 0 }
    }

    static func trainer(checkpoint: String) throws -> Trainer {
        let model = try VisionTransformer(weights: randomWeights(config, seed: 3), backend: TrainTestBackends.cpu)
        let trainer = try Trainer(model: model, batches: SyntheticBatches(config: config),
                                  settings: TrainingSettings(epochs: 2, learningRate: 1e-3), seed: 1,
                                  checkpoints: CheckpointPolicy(lastPath: checkpoint, everySteps: 2))
        trainer.stopsOnInterrupt = false
        return trainer
    }

    static func savedStep(_ path: String) throws -> Int {
        try Checkpoint.read(path: path).metadata.state.step
    }

    @Test("NaN or Inf written into a weight: the next step stops naming the step and the parameter",
          arguments: [Float.nan, -Float.infinity])
    func poisonedWeight(value: Float) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let checkpoint = folder.path("last.safetensors")
        let trainer = try Self.trainer(checkpoint: checkpoint)
        // Poisoned after step 3: step 4's loss is not finite, before step 4's checkpoint.
        trainer.hooks = [Poison(step: 3, parameter: "blocks.1.mlp.fc1.weight", value: value)]
        do {
            _ = try trainer.run()
            Issue.record("a run with a \(value) weight finished")
        } catch let error as TrainingError {
            let text = "\(error)"
            #expect(text.contains("at step 4"), "\(text)")
            #expect(text.contains("parameter blocks.1.mlp.fc1.weight holds \(value)"), "\(text)")
            #expect(text.contains("the last good checkpoint \(checkpoint) is kept"), "\(text)")
            #expect(!text.contains("\n"))
        }
        #expect(try Self.savedStep(checkpoint) == 2)
        // The kept checkpoint resumes.
        let resumed = try Self.trainer(checkpoint: checkpoint)
        try resumed.resume(from: checkpoint)
        #expect(try !resumed.run().stopped)
    }

    @Test("a weight that goes bad right before a checkpoint: the checkpoint is not written, the previous one kept")
    func poisonBeforeCheckpoint() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let checkpoint = folder.path("last.safetensors")
        let trainer = try Self.trainer(checkpoint: checkpoint)
        // Hooks run inside step 4, before the step-4 checkpoint is written.
        trainer.hooks = [Poison(step: 4, parameter: "head.weight", value: .infinity)]
        #expect {
            _ = try trainer.run()
        } throws: { error in
            let text = "\(error)"
            return text.contains("head.weight holds inf at step 4") && text.contains("not writing the checkpoint")
        }
        #expect(try Self.savedStep(checkpoint) == 2)
    }

    @Test("a loss term that returns Inf or NaN: the error names the step and says the weights are finite",
          arguments: [Double.infinity, Double.nan])
    func badLoss(value: Double) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let checkpoint = folder.path("last.safetensors")
        let trainer = try Self.trainer(checkpoint: checkpoint)
        trainer.terms = [BadTerm(step: 5, value: value)]
        #expect {
            _ = try trainer.run()
        } throws: { error in
            let text = "\(error)"
            return text.contains("loss is \(value) at step 5") && text.contains("the weights are finite")
        }
        #expect(try Self.savedStep(checkpoint) == 4)
    }
}
