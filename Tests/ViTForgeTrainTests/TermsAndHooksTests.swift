import Foundation
import Testing
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics
@testable import ViTForgeTrain

/// c·‖w‖² over one parameter, gradient 2c·w: a term whose gradient is known in closed form. With `multiplier`, the
/// value is λ·c·‖w‖² with λ a learned scalar slot (Lagrangian style): dλ += c·‖w‖², dw += 2cλ·w.
final class SquaredNormTerm: TrainingTerm {
    let name: String
    let parameter: String
    var coefficient: Double
    let multiplier: (value: Buffer, gradient: Buffer)?

    init(name: String = "l2", parameter: String, coefficient: Double,
         multiplier: (value: Buffer, gradient: Buffer)? = nil) {
        self.name = name
        self.parameter = parameter
        self.coefficient = coefficient
        self.multiplier = multiplier
    }

    func addGradient(_ trainer: Trainer) throws -> Double {
        let backend = trainer.model.backend
        guard let w = trainer.model.parameters[parameter], let dw = trainer.model.gradients[parameter] else {
            throw TrainingError.invalidState("no \(parameter)")
        }
        let squaredNorm = try backend.sumOfSquares(w, count: w.count)
        var lambda = 1.0
        if let multiplier {
            lambda = Double(try backend.read(multiplier.value, count: 1)[0])
            try backend.write([Float(coefficient * squaredNorm)], to: multiplier.gradient)
        }
        try backend.axpy(alpha: Float(2 * coefficient * lambda), x: w, y: dw, count: w.count)
        return lambda * coefficient * squaredNorm
    }
}

/// Reads one parameter's gradient as it stands after the terms before it (returns 0).
final class GradientProbe: TrainingTerm {
    let name = "probe"
    let parameter: String
    var seen: [[Float]] = []

    init(parameter: String) { self.parameter = parameter }

    func addGradient(_ trainer: Trainer) throws -> Double {
        seen.append(try trainer.model.backend.read(#require(trainer.model.gradients[parameter])))
        return 0
    }
}

/// A multiplier schedule (Vulcan-like): after each step the term's coefficient grows by `rate`× the term's value,
/// and the history of coefficients is kept as a tensor: state that must survive kill and resume.
final class CoefficientSchedule: TrainingHook {
    let name = "schedule"
    let term: SquaredNormTerm
    let rate: Double
    var history: [Float] = []

    init(term: SquaredNormTerm, rate: Double) {
        self.term = term
        self.rate = rate
    }

    func afterStep(_ trainer: Trainer) throws {
        let w = try #require(trainer.model.parameters[term.parameter])
        term.coefficient += rate * (try trainer.model.backend.sumOfSquares(w, count: w.count))
        history.append(Float(term.coefficient))
    }

    func checkpointState() throws -> HookState {
        HookState(json: String(term.coefficient.bitPattern), tensors: ["history": history])
    }

    func restore(_ state: HookState, trainer: Trainer) throws {
        term.coefficient = Double(bitPattern: try #require(UInt64(state.json)))
        history = state.tensors["history"] ?? []
    }
}

/// Removes MLP neurons of one block once, after step `atStep` (what CPD does every interval).
final class ShrinkOnce: TrainingHook {
    let name = "shrink"
    let changesShape = true
    let atStep: Int
    let block: Int
    let removed: [Int]

    init(atStep: Int, block: Int, removed: [Int]) {
        self.atStep = atStep
        self.block = block
        self.removed = removed
    }

    func afterStep(_ trainer: Trainer) throws {
        guard trainer.state.step == atStep else { return }
        let (weights, sources) = try removeNeurons(trainer.model.hostWeights(), block: block, removed: removed)
        try trainer.replaceModel(with: weights, elementSources: sources)
    }
}

/// The model without some MLP neurons of `block`, and each new element's index in the old tensor.
func removeNeurons(_ weights: ViTWeights, block: Int, removed: [Int]) throws
    -> (ViTWeights, [String: [Int]]) {
    var config = weights.config
    let hidden = config.blocks[block].mlpHidden, width = config.residualWidth
    let kept = (0 ..< hidden).filter { !removed.contains($0) }
    config.blocks[block].mlpHidden = kept.count
    let prefix = "blocks.\(block).mlp."
    let sources: [String: [Int]] = [
        prefix + "fc1.weight": kept.flatMap { j in (0 ..< width).map { j * width + $0 } },  // [hidden, width]
        prefix + "fc1.bias": kept,
        prefix + "fc2.weight": (0 ..< width).flatMap { row in kept.map { row * hidden + $0 } },  // [width, hidden]
    ]
    var tensors = weights.tensors
    for (name, map) in sources {
        let old = try #require(weights[name])
        let shape = name.hasSuffix("fc1.weight") ? [kept.count, width]
            : name.hasSuffix("fc1.bias") ? [kept.count] : [width, kept.count]
        tensors[name] = HostTensor(shape: shape, values: map.map { old.values[$0] })
    }
    return (try ViTWeights(config: config, tensors: tensors), sources)
}

/// The open training step: terms, hooks with checkpointed state, extra optimizer slots (ascending ones too), and a
/// model that shrinks mid-run. Nested in `ResumeTests`, whose `.serialized` then covers both: its interrupt test
/// raises the process-wide Ctrl-C flag, which would stop these trainers too.
extension ResumeTests {
    @Suite
    struct TermsAndHooksTests {
        static let config = tinyConfig()
        /// The resume tests' recipe: warm-up + cosine, clipping, label smoothing and distillation.
        static let settings = ResumeTests.settings

        static func trainer(_ backend: any Backend, weightsSeed: UInt64 = 1, config: ViTConfig = config,
                            settings: TrainingSettings = settings,
                            checkpoints: CheckpointPolicy = CheckpointPolicy()) throws -> Trainer {
            let model = try VisionTransformer(weights: randomWeights(config, seed: weightsSeed), backend: backend)
            let teacher = try VisionTransformer(weights: randomWeights(Self.config, seed: 99), backend: backend)
            return try Trainer(model: model, batches: SyntheticBatches(config: Self.config), settings: settings,
                               teacher: teacher, seed: 5, checkpoints: checkpoints)
        }

        static func bits(_ model: VisionTransformer) throws -> [String: [UInt32]] {
            try model.hostWeights().namedTensors().reduce(into: [:]) { result, tensor in
                if case let .float32(values) = tensor.values { result[tensor.name] = values.map(\.bitPattern) }
            }
        }

        @Test("a term adds its analytic gradient after backward and its value to the loss", arguments: TrainTestBackends.all)
        func termGradient(_ device: TrainBackend) throws {
            let name = "blocks.1.mlp.fc1.weight", coefficient = 0.37
            let plain = try Self.trainer(device.backend), penalised = try Self.trainer(device.backend)
            let plainProbe = GradientProbe(parameter: name), penalisedProbe = GradientProbe(parameter: name)
            plain.terms = [plainProbe]
            penalised.terms = [SquaredNormTerm(parameter: name, coefficient: coefficient), penalisedProbe]
            let w = try device.backend.read(#require(penalised.model.parameters[name]))
            try plain.step()
            try penalised.step()
            let plainValue = try plain.lastStepLoss(), penalisedValue = try penalised.lastStepLoss()

            let squaredNorm = w.reduce(0.0) { $0 + Double($1) * Double($1) }
            #expect(abs(try #require(penalisedValue.terms["l2"]) - coefficient * squaredNorm) <= 1e-5 * coefficient * squaredNorm)
            #expect(abs(penalisedValue.total - plainValue.total - coefficient * squaredNorm) <= 1e-5 * penalisedValue.total)
            let difference = zip(penalisedProbe.seen[0], plainProbe.seen[0]).map { $0 - $1 }
            let analytic = w.map { Float(2 * coefficient) * $0 }
            #expect(relativeError(difference, analytic) < 1e-5, "term gradient ≠ 2c·w")
        }

        @Test("an extra slot with a negative learning rate ascends; one with a positive rate descends",
              arguments: TrainTestBackends.all)
        func ascendingSlot(_ device: TrainBackend) throws {
            let backend = device.backend
            let trainer = try Self.trainer(backend)
            var lambdas: [(value: Buffer, gradient: Buffer)] = []
            for (scale, name) in [(-1.0, "ascending"), (1.0, "descending")] {
                let slot = (value: try backend.makeBuffer([0.5]), gradient: try backend.zeros(1))
                try trainer.optimizer.addSlot(name: name, shape: [1], parameter: slot.value, gradient: slot.gradient,
                                              learningRateScale: scale)
                trainer.terms.append(SquaredNormTerm(name: name, parameter: "head.weight", coefficient: 0.1,
                                                     multiplier: slot))
                lambdas.append(slot)
            }
            #expect(throws: TrainingError.self) {
                try trainer.optimizer.addSlot(name: "bad", shape: [1], parameter: lambdas[0].value,
                                              gradient: lambdas[0].gradient, learningRateScale: -1, decays: true)
            }
            // The term's gradient wrt λ is c·‖w‖² > 0: Adam's first step moves λ by lr·scale·(m̂/(√v̂+ε)) ≈ ±lr.
            let learningRate = trainer.schedule.learningRate(step: 0)
            try trainer.step()
            let up = Double(try backend.read(lambdas[0].value)[0]), down = Double(try backend.read(lambdas[1].value)[0])
            #expect(abs(up - (0.5 + learningRate)) < 1e-6 && abs(down - (0.5 - learningRate)) < 1e-6)
            for _ in 0 ..< 3 { try trainer.step() }  // the rest of the first epoch (4 batches)
            #expect(try backend.read(lambdas[0].value)[0] > Float(up))
            #expect(try backend.read(lambdas[1].value)[0] < Float(down))
        }

        /// A trainer with a Lagrangian term on a learned multiplier slot and a hook that schedules its coefficient.
        static func regularised(_ backend: any Backend, weightsSeed: UInt64,
                                checkpoints: CheckpointPolicy = CheckpointPolicy()) throws
            -> (Trainer, CoefficientSchedule, Buffer) {
            let trainer = try trainer(backend, weightsSeed: weightsSeed, checkpoints: checkpoints)
            let lambda = (value: try backend.makeBuffer([Float(weightsSeed)]), gradient: try backend.zeros(1))
            try trainer.optimizer.addSlot(name: "lambda", shape: [1], parameter: lambda.value, gradient: lambda.gradient,
                                          learningRateScale: -0.5)
            let term = SquaredNormTerm(parameter: "blocks.0.attn.proj.weight", coefficient: 1e-3, multiplier: lambda)
            let schedule = CoefficientSchedule(term: term, rate: 1e-4)
            trainer.terms = [term]
            trainer.hooks = [schedule]
            return (trainer, schedule, lambda.value)
        }

        @Test("kill and resume with a term, a hook's state and an extra slot: bit-identical", arguments: [2, 5, 8])
        func resumeWithHookState(stopAfter: Int) throws {
            let backend = TrainTestBackends.cpu
            let folder = try TemporaryFolder()
            defer { folder.remove() }
            let (uninterrupted, schedule, lambda) = try Self.regularised(backend, weightsSeed: 1)
            _ = try uninterrupted.run()

            let last = folder.path("last.safetensors")
            let (first, _, _) = try Self.regularised(backend, weightsSeed: 1, checkpoints: CheckpointPolicy(lastPath: last))
            first.onProgress = { if $0.step == stopAfter { first.requestStop() } }
            #expect(try first.run().stopped)

            // Other weights, another λ and a fresh schedule: everything must come from the checkpoint.
            let (resumed, resumedSchedule, resumedLambda) = try Self.regularised(
                backend, weightsSeed: 2, checkpoints: CheckpointPolicy(lastPath: last))
            try resumed.resume(from: last)
            #expect(resumedSchedule.history.count == stopAfter)
            _ = try resumed.run()
            #expect(try Self.bits(resumed.model) == Self.bits(uninterrupted.model))
            #expect(try backend.read(resumedLambda)[0].bitPattern == backend.read(lambda)[0].bitPattern)
            #expect(resumedSchedule.term.coefficient.bitPattern == schedule.term.coefficient.bitPattern)
            #expect(resumedSchedule.history.map(\.bitPattern) == schedule.history.map(\.bitPattern))

            // A run without the slot cannot resume from it.
            let plain = try Self.trainer(backend)
            #expect(throws: TrainingError.self) { try plain.resume(from: last) }
        }

        @Test("a hook that shrinks the model mid-run equals training the smaller model from that step with the sliced moments",
              arguments: TrainTestBackends.all)
        func shrinkMidRun(_ device: TrainBackend) throws {
            let backend = device.backend
            let shrinkStep = 6, removed = [1, 4, 8]
            let shrinking = try Self.trainer(backend)
            shrinking.hooks = [ShrinkOnce(atStep: shrinkStep, block: 0, removed: removed)]
            _ = try shrinking.run()
            #expect(shrinking.model.config.blocks[0].mlpHidden == Self.config.blocks[0].mlpHidden - removed.count)

            // Reference: the full model to the same step, then by hand a smaller model with sliced weights and moments.
            let full = try Self.trainer(backend)
            full.onProgress = { if $0.step == shrinkStep { full.requestStop() } }
            #expect(try full.run().stopped)
            let (smallWeights, sources) = try removeNeurons(full.model.hostWeights(), block: 0, removed: removed)
            let small = try Self.trainer(backend, config: smallWeights.config)
            for spec in smallWeights.config.parameterSpecs() {
                try small.model.setParameter(spec.name, #require(smallWeights[spec.name]).values)
                let moments = try full.optimizer.hostState(spec.name)
                let map = sources[spec.name] ?? Array(0 ..< spec.elementCount)
                try small.optimizer.restore(spec.name, firstMoment: map.map { moments.firstMoment[$0] },
                                            secondMoment: map.map { moments.secondMoment[$0] })
            }
            small.optimizer.stepCount = full.optimizer.stepCount
            small.state = full.state
            small.random = full.random
            _ = try small.run()
            #expect(try Self.bits(shrinking.model) == Self.bits(small.model))
        }

        @Test("kill after a mid-run shrink and resume into a full-size trainer: continues on the smaller model")
        func resumeAfterShrink() throws {
            let backend = TrainTestBackends.cpu
            let folder = try TemporaryFolder()
            defer { folder.remove() }
            let hook = { ShrinkOnce(atStep: 3, block: 1, removed: [0, 6]) }
            let uninterrupted = try Self.trainer(backend)
            uninterrupted.hooks = [hook()]
            _ = try uninterrupted.run()

            let last = folder.path("last.safetensors")
            let first = try Self.trainer(backend, checkpoints: CheckpointPolicy(lastPath: last))
            first.hooks = [hook()]
            first.onProgress = { if $0.step == 7 { first.requestStop() } }
            #expect(try first.run().stopped)
            let resumed = try Self.trainer(backend, weightsSeed: 2, checkpoints: CheckpointPolicy(lastPath: last))
            resumed.hooks = [hook()]
            try resumed.resume(from: last)
            #expect(resumed.model.config.blocks[1].mlpHidden == Self.config.blocks[1].mlpHidden - 2)
            _ = try resumed.run()
            #expect(try Self.bits(resumed.model) == Self.bits(uninterrupted.model))

            // Without a shape-changing hook the smaller checkpoint is another model: refused.
            let plain = try Self.trainer(backend)
            #expect(throws: TrainingError.self) { try plain.resume(from: last) }
        }
    }
}
