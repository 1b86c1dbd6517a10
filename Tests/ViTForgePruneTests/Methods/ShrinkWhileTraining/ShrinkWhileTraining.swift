import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
@testable import ViTForgePrune
import ViTForgeTrain

/// A method written only against the platform's seams, as ViT-Slim, Vulcan and CPD will be: a penalty weighted by
/// a learned multiplier (an ascending optimizer slot), a per-step hook with checkpointed state that shrinks the
/// model mid-run (one lowest-norm MLP neuron per block every `interval` steps, until `neuronsToRemove` are gone), all
/// inside its own training phase; no change to the trainer or the pipeline. Registered by one line of
/// `TestMethodRegistry`; it has no flags of its own.
struct ShrinkWhileTraining: FlaglessMethod {
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
