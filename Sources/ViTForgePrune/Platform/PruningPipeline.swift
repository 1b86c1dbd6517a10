import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// The product's main job, shared by `vitforge prune` and `vitforge demo`, the same for every method: evaluate the
/// original, run the method (score, select, its own training phase if it has one, cut), evaluate, fine-tune
/// (optionally distilling from the original), evaluate, time both models, and describe it all in a `PruneReport`.
public struct PruningPipeline {
    public var method: any PruningMethod
    public var budget: Budget
    public var scope: RankingScope
    /// Calibration images (VBP statistics, Taylor gradients), the first N of the training split in order; nil: all.
    public var calibrationImages: Int?
    public var batchSize: Int
    /// The method's own training phase (`--epochs`; 0 epochs for methods without one).
    public var methodTraining: TrainingPhase
    /// Fine-tuning after the cut (`--finetune-epochs`), nil for none.
    public var fineTuning: TrainingPhase?
    public var latencyBatches: [Int]
    public var seed: UInt64
    /// The shared settings only some methods read (`PruningContext.classes`, `.validationFraction`,
    /// `.compensationRidge`).
    public var classes: [Int]?
    public var validationFraction: Double?
    public var compensationRidge: Double?
    /// `--compensate`: refit the layers the cut feeds (methods with `SharedSetting.compensation`); nil: off.
    public var compensation: CompensationSettings?

    public init(method: any PruningMethod, budget: Budget, scope: RankingScope = .global,
                calibrationImages: Int? = nil, batchSize: Int = 128, methodTraining: TrainingPhase? = nil,
                fineTuning: TrainingPhase? = nil, latencyBatches: [Int] = [1, 64], seed: UInt64 = 0) {
        self.method = method
        self.budget = budget
        self.scope = scope
        self.calibrationImages = calibrationImages
        self.batchSize = batchSize
        self.methodTraining = methodTraining ?? TrainingPhase(name: method.name, epochs: 0, batchSize: batchSize,
                                                              distill: false, seed: seed)
        self.fineTuning = fineTuning
        self.latencyBatches = latencyBatches
        self.seed = seed
    }

    /// Where the phases report to (one line each; training's per-step progress goes to `progress`).
    public struct Hooks {
        public var log: (String) -> Void
        public var progress: ((TrainingProgress) -> Void)?
        /// Asked after every training step of every phase; true stops the run as Ctrl-C would.
        public var stopWhen: ((TrainingProgress) -> Bool)?

        public init(log: @escaping (String) -> Void = { print($0) }, progress: ((TrainingProgress) -> Void)? = nil,
                    stopWhen: ((TrainingProgress) -> Bool)? = nil) {
            self.log = log
            self.progress = progress
            self.stopWhen = stopWhen
        }
    }

    public struct Outcome {
        public var weights: ViTWeights
        /// Nil when `stopped`.
        public var report: PruneReport?
        /// A training phase was interrupted (Ctrl-C): its checkpoint exists, nothing final was written.
        public var stopped: Bool
    }

    /// Checks the method against the budget and the epochs before any work (one line).
    public func validate() throws {
        try budget.validate()
        if let problem = method.problem(with: budget, epochs: methodTraining.epochs) {
            throw PruneError.invalidBudget(problem)
        }
    }

    public func run(original: ViTWeights, originalPath: String, prunedPath: String, data: DatasetSplits,
                    backend: Backend, command: String, version: String, hooks: Hooks = Hooks()) throws -> Outcome {
        try validate()
        try method.checkReach(budget, config: original.config)
        var seconds: [String: Double] = [:]
        var phases: [PruneReport.PhaseTime] = []
        func timed<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer {
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                seconds[phase, default: 0] += elapsed
                phases.append(.init(name: phase, seconds: elapsed))
            }
            return try body()
        }
        let evaluation = data.test ?? data.validation
        func accuracy(_ weights: ViTWeights) throws -> Double? {
            guard let evaluation else { return nil }
            let model = try VisionTransformer(weights: weights, backend: backend)
            return try Evaluator.tally(model, on: evaluation, batchSize: max(batchSize, 256)).accuracy
        }

        let originalAccuracy = try timed("evaluate_original") { try accuracy(original) }
        hooks.log("original: \(describe(original.config)), accuracy \(shown(originalAccuracy))")

        var latency: LatencyMeter?
        if case let .latency(_, batch)? = budget.target { latency = LatencyMeter(backend: backend, batch: batch) }
        var context = PruningContext(
            original: original, data: data, backend: backend, budget: budget, scope: scope,
            calibrationImages: calibrationImages, batchSize: batchSize, seed: seed, training: methodTraining,
            latency: latency, log: hooks.log, progress: hooks.progress, stopWhen: hooks.stopWhen)
        context.classes = classes
        context.validationFraction = validationFraction
        context.compensationRidge = compensationRidge
        var result = try timed("prune") { try method.prune(context) }
        if result.stopped { return Outcome(weights: result.weights, report: nil, stopped: true) }
        var compensationRecords: [Compensation.LayerRecord]?
        if let compensation {
            (result, compensationRecords) = try timed("compensate") {
                try compensation.apply(to: result, context: context, method: method.name)
            }
        }
        let pruned = result.weights
        hooks.log("pruned (\(method.name)): \(result.outcome.summary)")
        let prunedAccuracy = try timed("evaluate_pruned") { try accuracy(pruned) }
        hooks.log("right after pruning: accuracy \(shown(prunedAccuracy))")

        var final = pruned
        var finalAccuracy: Double?
        var finetuneHistory: TrainingHistory?
        if let fineTuning, fineTuning.epochs > 0 {
            let tuned = try timed("finetune") {
                try fineTuning.run(student: pruned, teacher: original, training: data.training, backend: backend,
                                   progress: hooks.progress, stopWhen: hooks.stopWhen)
            }
            if tuned.stopped { return Outcome(weights: tuned.weights, report: nil, stopped: true) }
            final = tuned.weights
            finetuneHistory = tuned.history
            finalAccuracy = try timed("evaluate_finetuned") { try accuracy(final) }
            hooks.log("after \(fineTuning.epochs) epoch(s) of fine-tuning"
                      + "\(fineTuning.distill ? " with distillation" : ""): accuracy \(shown(finalAccuracy))")
        }

        let (originalLatency, prunedLatency) = try timed("latency") {
            let originalModel = try VisionTransformer(weights: original, backend: backend)
            let prunedModel = try VisionTransformer(weights: final, backend: backend)
            let pass = PassMonitor.begin("latency", total: 2 * latencyBatches.count, unit: "timings")
            // Both models in alternating rounds per batch size, so a burst of load cannot favour one of them.
            var timings: ([InferenceTiming], [InferenceTiming]) = ([], [])
            for batch in latencyBatches {
                let pair = try VisionTransformer.timeInferenceAlternating([originalModel, prunedModel], batch: batch)
                timings.0.append(pair[0])
                timings.1.append(pair[1])
                try pass.advance(2)
            }
            pass.end()
            return timings
        }
        let originalCost = original.config.cost(), prunedCost = final.config.cost()
        var report = PruneReport(
            command: command, version: version, device: backend.name, seed: seed, method: method.name,
            budget: result.outcome.summary,
            original: .init(path: originalPath, params: originalCost.parameters, macs: originalCost.macs,
                            accuracy: originalAccuracy, perBlock: PruneReport.widths(original.config),
                            latency: originalLatency, tokens: PruneReport.TokenSets(original.config)),
            pruned: .init(path: prunedPath, params: prunedCost.parameters, macs: prunedCost.macs,
                          accuracy: finalAccuracy ?? prunedAccuracy, perBlock: PruneReport.widths(final.config),
                          latency: prunedLatency, tokens: PruneReport.TokenSets(final.config)),
            accuracyAfterPruning: prunedAccuracy, accuracyAfterFineTuning: finalAccuracy,
            paramsFraction: Double(prunedCost.parameters) / Double(originalCost.parameters),
            macsFraction: Double(prunedCost.macs) / Double(originalCost.macs),
            epochs: methodTraining.epochs, finetuneEpochs: fineTuning?.epochs ?? 0,
            distill: (methodTraining.epochs > 0 && methodTraining.distill)
                || (fineTuning.map { $0.epochs > 0 && $0.distill } ?? false),
            methodHistory: result.history, histograms: result.histograms,
            pruningSteps: result.pruningSteps.isEmpty ? nil : result.pruningSteps, seconds: seconds, phases: phases,
            finetuneHistory: finetuneHistory)
        report.budgetAsked = budget.asked
        report.methodMetrics = result.metrics
        report.methodSeries = result.series
        report.compensation = compensationRecords
        if case .table(let loaded) = budget.rounding { report.latencyTable = .init(loaded) }
        if let loaded = budget.latencyTable { report.latencyTable = .init(loaded) }
        report.latencySolve = result.outcome.latencySolve
        return Outcome(weights: final, report: report, stopped: false)
    }

    /// The checkpoint files the run's training phases write (to delete once the final model is saved).
    public var checkpointPaths: [String] {
        [methodTraining.checkpointPath, methodTraining.bestCheckpointPath,
         fineTuning?.checkpointPath].compactMap { $0 }
    }

    private func shown(_ accuracy: Double?) -> String { Formatting.percent(accuracy, missing: "n/a (no test split)") }

    private func describe(_ config: ViTConfig) -> String {
        let cost = config.cost()
        return "\(cost.parameters) params, \(cost.macs) MACs/image, MLP widths \(config.blocks.map(\.mlpHidden))"
    }
}
