import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeModel
import ViTForgeTrain

/// The product's main job, shared by `vitforge prune` and `vitforge demo`: evaluate the original, score and cut
/// with the chosen method, evaluate, fine-tune (optionally distilling from the original), evaluate, time both
/// models, and describe it all in a `PruneReport`.
public struct PruningPipeline {
    public enum Method: String, CaseIterable, Sendable {
        case vbp, magnitude, taylor, random
    }

    public var method: Method
    public var budget: Budget
    public var scope: RankingScope
    /// VBP's mean-shift compensation (METHODS.md §1.b); off only for ablations.
    public var biasFold: Bool
    /// What VBP ranks neurons by (the paper: variance).
    public var vbpScore: VarianceBasedPruning.Score
    /// Calibration images (VBP statistics, Taylor gradients), the first N of the training split in order; nil: all.
    public var calibrationImages: Int?
    public var batchSize: Int
    public var fineTuning: FineTuning?
    public var latencyBatches: [Int]
    public var seed: UInt64

    public init(method: Method, budget: Budget, scope: RankingScope = .global, biasFold: Bool = true,
                vbpScore: VarianceBasedPruning.Score = .variance, calibrationImages: Int? = nil, batchSize: Int = 128, fineTuning: FineTuning? = nil,
                latencyBatches: [Int] = [1, 64], seed: UInt64 = 0) {
        self.method = method
        self.budget = budget
        self.scope = scope
        self.biasFold = biasFold
        self.vbpScore = vbpScore
        self.calibrationImages = calibrationImages
        self.batchSize = batchSize
        self.fineTuning = fineTuning
        self.latencyBatches = latencyBatches
        self.seed = seed
    }

    /// Where the phases report to (one line each; fine-tuning's per-step progress goes to `progress`).
    public struct Hooks {
        public var log: (String) -> Void
        public var progress: ((TrainingProgress) -> Void)?

        public init(log: @escaping (String) -> Void = { print($0) }, progress: ((TrainingProgress) -> Void)? = nil) {
            self.log = log
            self.progress = progress
        }
    }

    public struct Outcome {
        public var weights: ViTWeights
        public var report: PruneReport
        /// Fine-tuning was interrupted (Ctrl-C): a checkpoint exists, nothing final was written.
        public var stopped: Bool
    }

    public func run(original: ViTWeights, originalPath: String, prunedPath: String, data: DatasetSplits,
                    backend: Backend, command: String, version: String, hooks: Hooks = Hooks()) throws -> Outcome {
        var seconds: [String: Double] = [:]
        func timed<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { seconds[phase, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 }
            return try body()
        }
        let evaluation = data.test ?? data.validation
        func accuracy(_ weights: ViTWeights) throws -> Double? {
            guard let evaluation else { return nil }
            let model = try VisionTransformer(weights: weights, backend: backend)
            return try Evaluator.tally(model, on: evaluation, batchSize: max(batchSize, 256)).accuracy
        }

        let originalAccuracy = try timed("evaluate_original") { try accuracy(original) }
        hooks.log("original: \(describe(original.config)), accuracy \(percent(originalAccuracy))")

        let calibration = DatasetCalibrationImages(data.training)
        let limit = calibrationImages.map { min($0, calibration.count) }
        let (pruned, outcome): (ViTWeights, BudgetOutcome) = try timed("prune") {
            switch method {
            case .vbp:
                let result = try VarianceBasedPruning.run(
                    original, backend: backend, images: calibration, limit: limit, batchSize: batchSize,
                    options: VarianceBasedPruning.Options(scope: scope, biasFold: biasFold, roundTo: budget.roundTo,
                                                          score: vbpScore),
                    budget: budget)
                return (result.weights, result.outcome)
            case .magnitude, .taylor, .random:
                let criterion: CriterionPruning.Criterion = method == .magnitude ? .magnitude(.l2)
                    : method == .taylor ? .taylor : .random(seed: seed)
                let result = try CriterionPruning.run(original, backend: backend, criterion: criterion, budget: budget,
                                                      scope: scope, images: calibration, limit: limit,
                                                      batchSize: batchSize)
                return (result.weights, result.outcome)
            }
        }
        hooks.log("pruned (\(method.rawValue)): \(outcome.summary)")
        let prunedAccuracy = try timed("evaluate_pruned") { try accuracy(pruned) }
        hooks.log("right after pruning: accuracy \(percent(prunedAccuracy))")

        var final = pruned
        var finalAccuracy: Double?
        var stopped = false
        if let fineTuning, fineTuning.epochs > 0 {
            let result = try timed("finetune") {
                try fineTuning.run(student: pruned, teacher: original, training: data.training, backend: backend,
                                   progress: hooks.progress)
            }
            final = result.weights
            stopped = result.stopped
            if !stopped {
                finalAccuracy = try timed("evaluate_finetuned") { try accuracy(final) }
                hooks.log("after \(fineTuning.epochs) epoch(s) of fine-tuning\(fineTuning.distill ? " with distillation" : ""): "
                          + "accuracy \(percent(finalAccuracy))")
            }
        }

        let (originalLatency, prunedLatency) = try timed("latency") {
            let originalModel = try VisionTransformer(weights: original, backend: backend)
            let prunedModel = try VisionTransformer(weights: final, backend: backend)
            return (try latencyBatches.map { try originalModel.timeInference(batch: $0) },
                    try latencyBatches.map { try prunedModel.timeInference(batch: $0) })
        }
        let originalCost = original.config.cost(), prunedCost = final.config.cost()
        let report = PruneReport(
            command: command, version: version, device: backend.name, seed: seed, method: method.rawValue,
            budget: outcome.summary,
            original: .init(path: originalPath, params: originalCost.parameters, macs: originalCost.macs,
                            accuracy: originalAccuracy, perBlock: PruneReport.widths(original.config),
                            latency: originalLatency),
            pruned: .init(path: prunedPath, params: prunedCost.parameters, macs: prunedCost.macs,
                          accuracy: finalAccuracy ?? prunedAccuracy, perBlock: PruneReport.widths(final.config),
                          latency: prunedLatency),
            accuracyAfterPruning: prunedAccuracy, accuracyAfterFineTuning: finalAccuracy,
            paramsFraction: Double(prunedCost.parameters) / Double(originalCost.parameters),
            macsFraction: Double(prunedCost.macs) / Double(originalCost.macs),
            finetuneEpochs: fineTuning?.epochs ?? 0, distill: fineTuning?.distill ?? false, seconds: seconds)
        return Outcome(weights: final, report: report, stopped: stopped)
    }

    private func describe(_ config: ViTConfig) -> String {
        let cost = config.cost()
        return "\(cost.parameters) params, \(cost.macs) MACs/image, MLP widths \(config.blocks.map(\.mlpHidden))"
    }
}

func percent(_ value: Double?) -> String {
    guard let value else { return "n/a (no test split)" }
    let tenths = Int((value * 1000).rounded())
    return "\(tenths / 10).\(tenths % 10)%"
}
