import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// Vulcan (Wei et al., ICLR 2026; METHODS.md §3): from a general model, a small one that serves only the classes
/// named. Train-then-prune: score the MLP neurons on the subset and budget widths from R (the share removed), cluster
/// each MLP's neurons, post-train on the subset's images under CCNC (members collapse onto their anchor) and TNNR
/// (each head's Q and V lose their tail singular values) with multipliers raised by gradient ascent; then merge the
/// clusters and re-factorise the attention by SVD — lossless once the constraints hold.
public struct Vulcan: PruningMethod {
    public static let name = "vulcan"
    public static let summary = "Vulcan: class-specific derivation (--classes, --prune-ratio R removed): post-train "
        + "on the subset under neuron-collapse and tail-rank constraints, then merge MLP clusters and SVD-refactor "
        + "attention"
    public static let hasTrainingPhase = true
    public static let sharedSettings: Set<SharedSetting> = [.calibrationImages, .validationFraction]
    public static let settingNotes: [SharedSetting: String] = [.validationFraction: "the cut, default 0.1"]
    public static let defaultBudget = DefaultBudget.methodSetting(flag: "--prune-ratio", value: Options.defaultPruneRatio,
                                                                  meaning: "removes its default share")
    /// The paper's multiples of 8; `--round-to K` rounds down to multiples of K instead, `--round-to table` to the
    /// table's fastest widths (never above the count R gives: real pruning stays ≥ R).
    public static let defaultRounding = VulcanBudget.paperRounding

    public struct Options: Equatable, Sendable {
        /// The subset (the data set's class ids), for the restricted accuracies and `--trim-head`; empty: the
        /// classes of the training data (`vitforge prune --classes` restricts the data).
        public var classes: [Int]
        /// The paper's R: the share of MLP neurons and (on average) attention dims REMOVED; nil with a target.
        public var pruneRatio: Double?
        /// The paper's R when the user gives no budget.
        public static let defaultPruneRatio = 0.6
        /// The multipliers' learning rate ρ (§3.b).
        public var rho: Double
        /// Stop post-training once both normalised constraint values (ℓ1 parts) are below this.
        public var epsilon: Double
        /// Evaluate the would-be pruned model every N steps on the validation split (0: never; the last is cut).
        public var evalEvery: Int
        /// Share of the subset's training images held out for that validation.
        public var validationFraction: Double
        public var trimHead: Bool
        public var kmeansIterations: Int
        /// Also fine-tune the base on the subset for the same epochs (no constraints) and report its accuracy: the
        /// honest reference (METHODS.md §0.5).
        public var compareFinetunedBase = false

        public init(classes: [Int] = [], pruneRatio: Double? = defaultPruneRatio, rho: Double = 1, epsilon: Double = 1e-3,
                    evalEvery: Int = 0, validationFraction: Double = 0.1, trimHead: Bool = false,
                    kmeansIterations: Int = 50) {
            self.classes = classes
            self.pruneRatio = pruneRatio
            self.rho = rho
            self.epsilon = epsilon
            self.evalEvery = evalEvery
            self.validationFraction = validationFraction
            self.trimHead = trimHead
            self.kmeansIterations = kmeansIterations
        }
    }

    public var options: Options

    public init(options: Options) { self.options = options }

    public func problem(with budget: Budget, epochs: Int) -> String? {
        if !budget.keepFractions.isEmpty {
            return "vulcan's budget is --prune-ratio R (the share removed) or --target-params/--target-macs, not --keep-*"
        }
        if case .latency? = budget.target { return "vulcan solves params or MACs targets, not latency" }
        if let ratio = options.pruneRatio, budget.target == nil, !(0 ..< 1).contains(ratio) {
            return "--prune-ratio \(ratio) must be in [0, 1) (the share removed)"
        }
        if !(options.rho > 0) { return "--rho must be positive" }
        if options.evalEvery < 0 { return "--eval-every must be ≥ 0" }
        if options.evalEvery > 0 && !(options.validationFraction > 0 && options.validationFraction < 1) {
            return "--val-fraction must be in (0, 1) with --eval-every"
        }
        return nil
    }

    public func checkReach(_ budget: Budget, config: ViTConfig) throws {
        for (b, block) in config.blocks.enumerated() where !block.hasUniformHeads || block.heads == 0 {
            throw PruneError.invalidBudget("vulcan: block \(b) has no heads or heads of different widths; it "
                                           + "starts from a general (unpruned) model")
        }
    }

    // MARK: 1. Score and budget

    /// The widths of every block at ratio R (§3.b steps 1–2), rounded down by `rounding`.
    public static func widths(config: ViTConfig, mlpScores: [[Double]], qkRanks: [Double], voRanks: [Double],
                              ratio: Double, rounding: WidthRounding = defaultRounding) -> [VulcanBudget.BlockWidths] {
        let mlp = VulcanBudget.mlpWidths(scores: mlpScores, ratio: ratio, rounding: rounding)
        let attention = VulcanBudget.attentionDims(qkRanks: qkRanks, voRanks: voRanks,
                                                   qkDims: config.blocks.map(\.qkDim), vDims: config.blocks.map(\.vDim),
                                                   ratio: ratio, rounding: rounding)
        return zip(mlp, attention).map { VulcanBudget.BlockWidths(mlpHidden: $0, qkDim: $1.qk, vDim: $1.v) }
    }

    /// The config the surgery produces for `widths` (for costs before any training).
    public static func prunedConfig(_ config: ViTConfig, widths: [VulcanBudget.BlockWidths]) -> ViTConfig {
        var result = config
        for (b, width) in widths.enumerated() {
            result.blocks[b] = BlockConfig(heads: config.blocks[b].heads, qkDim: width.qkDim, vDim: width.vDim,
                                           mlpHidden: width.mlpHidden, attentionScale: 1 / Double(width.qkDim).squareRoot())
        }
        return result
    }

    /// R from a params/MACs target by bisection on the rounded widths (`widthsAt` rounds): the upper end always
    /// keeps at most the target, so the result does too, whatever the rounding (a table's widths need not fall
    /// monotonically with R; the bisection then settles on one R that keeps at most the target, not the largest
    /// such cost).
    func solveRatio(_ budget: Budget, config: ViTConfig, widthsAt: (Double) -> [VulcanBudget.BlockWidths]) throws -> Double {
        guard let target = budget.target else { return options.pruneRatio ?? Options.defaultPruneRatio }
        let full = config.cost()
        func kept(_ ratio: Double) -> Double {
            let cost = Self.prunedConfig(config, widths: widthsAt(ratio)).cost()
            if case .params = target { return Double(cost.parameters) / Double(full.parameters) }
            return Double(cost.macs) / Double(full.macs)
        }
        let fraction: Double
        switch target {
        case let .params(f), let .macs(f): fraction = f
        default: throw PruneError.invalidBudget("vulcan solves params or MACs targets")
        }
        var low = 0.0, high = 0.999
        guard kept(high) <= fraction else {
            throw PruneError.invalidBudget("vulcan cannot go below \(Formatting.percent(kept(high))) of the "
                                           + "original at the smallest widths its rounding allows")
        }
        for _ in 0 ..< 40 {
            let middle = (low + high) / 2
            if kept(middle) <= fraction { high = middle } else { low = middle }
        }
        return high
    }

    /// k-means on each block's fc1 rows with its kept width as k; the anchor is the member of highest score.
    public static func clusters(_ weights: ViTWeights, widths: [VulcanBudget.BlockWidths], scores: [[Double]],
                                seed: UInt64, iterations: Int) -> [[VulcanSurgery.Cluster]] {
        weights.config.blocks.indices.map { b in
            let fc1 = weights["blocks.\(b).mlp.fc1.weight"]
            let hidden = weights.config.blocks[b].mlpHidden, width = weights.config.residualWidth
            let assignment = KMeans.cluster(fc1?.values.map(Double.init) ?? [], count: hidden, dimension: width,
                                            k: widths[b].mlpHidden, seed: seed &+ UInt64(b), iterations: iterations)
            var members = [[Int]](repeating: [], count: widths[b].mlpHidden)
            for (neuron, cluster) in assignment.enumerated() { members[cluster].append(neuron) }
            return members.map { group in
                let anchor = group.max { scores[b][$0] < scores[b][$1] || (scores[b][$0] == scores[b][$1] && $0 > $1) } ?? 0
                return VulcanSurgery.Cluster(anchor: anchor, members: group)
            }
        }
    }

    // MARK: 2. Post-train, 3. cut

    public func prune(_ context: PruningContext) throws -> MethodOutcome {
        let original = context.original
        let config = original.config
        let backend = context.backend
        let statistics = try VarianceBasedPruning.statistics(
            of: VisionTransformer(weights: original, backend: backend), images: context.calibration,
            limit: context.calibrationLimit, batchSize: context.batchSize)
        let scores = statistics.mean
        let ranks = try VulcanBudget.effectiveRanks(VulcanSurgery.doubles(original), config: config)
        let rounding = context.budget.requestedRounding ?? Self.defaultRounding
        let widthsAt = { (ratio: Double) in
            Self.widths(config: config, mlpScores: scores, qkRanks: ranks.qk, voRanks: ranks.vo, ratio: ratio,
                        rounding: rounding)
        }
        let ratio = try solveRatio(context.budget, config: config, widthsAt: widthsAt)
        let widths = widthsAt(ratio)
        let clusters = Self.clusters(original, widths: widths, scores: scores, seed: context.seed,
                                     iterations: options.kmeansIterations)
        context.log("vulcan: R = \(Formatting.fixed(ratio, decimals: 3)), \(rounding.summary); widths (mlp/qk/v) "
                    + widths.map { "\($0.mlpHidden)/\($0.qkDim)/\($0.vDim)" }.joined(separator: " "))
        // The subset in the order given (the trimmed head's outputs follow it): the method's own, else the run's.
        let subset = options.classes.isEmpty ? context.classes ?? [] : options.classes
        let classes = subset.isEmpty
            ? Set((0 ..< context.data.training.count).map(context.data.training.label)).sorted() : subset
        let trim = options.trimHead ? classes : nil
        let outcome = { (weights: ViTWeights) in
            BudgetOutcome(original: config, pruned: weights.config, nativeRatio: 1 - ratio, target: context.budget.target)
        }

        var data = context.data.training
        var validation: Dataset?
        if options.evalEvery > 0 {
            let split = try data.splitValidation(fraction: context.validationFraction ?? options.validationFraction,
                                                 seed: context.seed)
            (data, validation) = (split.training, split.validation)
        }
        var metrics: [String: Double] = [:]
        guard classes.count < config.classes else {
            throw PruneError.invalidBudget("vulcan derives a model for a class subset: give --classes")
        }
        if let test = context.data.test {
            let base = try Self.subsetAccuracy(original, on: test, classes: classes, backend: backend)
            metrics["base_accuracy"] = base.accuracy
            metrics["base_accuracy_restricted"] = base.restrictedAccuracy
        }
        metrics["prune_ratio"] = ratio
        guard context.training.epochs > 0 else {
            // No post-training: the surgery alone (lossy: nothing made the clusters collapse or the tails vanish).
            let pruned = try VulcanSurgery.apply(original, clusters: clusters, widths: widths, trimHead: trim)
            if let test = context.data.test {
                let after = try Self.subsetAccuracy(pruned, on: test, classes: classes, backend: backend)
                metrics["after_surgery_accuracy"] = after.accuracy
                metrics["after_surgery_accuracy_restricted"] = after.restrictedAccuracy
            }
            var result = MethodOutcome(weights: pruned, outcome: outcome(pruned))
            result.metrics = metrics
            return result
        }

        var phase = context.training
        phase.constantLearningRate = true
        let trainer = try phase.makeTrainer(student: original, teacher: original, training: data, backend: backend)
        let multipliers = try VulcanMultipliers(backend: backend)
        try multipliers.addSlots(to: trainer.optimizer, rho: options.rho, learningRate: phase.learningRate)
        let penalty = try VulcanPenalty(multipliers: multipliers, config: config, clusters: clusters, widths: widths,
                                        backend: backend)
        let monitor = VulcanMonitor(penalty: penalty, clusters: clusters, widths: widths, trimHead: trim,
                                    classes: classes, validation: validation, evalEvery: options.evalEvery,
                                    epsilon: options.epsilon, batchSize: context.batchSize)
        trainer.terms = [penalty]
        trainer.hooks = [monitor]
        var trainingContext = context
        trainingContext.training = phase
        let userStop = context.stopWhen
        trainingContext.stopWhen = { progress in monitor.converged || (userStop?(progress) ?? false) }
        let stopped = try trainingContext.train(trainer)
        if stopped && !monitor.converged {
            return MethodOutcome(weights: try trainer.model.hostWeights(), outcome: outcome(original),
                                 stopped: true, history: trainer.state.history)
        }
        let trained = try trainer.model.hostWeights()
        let last = try VulcanSurgery.apply(trained, clusters: monitor.clusters, widths: widths, trimHead: trim)
        let chosen = monitor.best.map { try? ViTWeights.fromHookTensors($0) } ?? nil
        let pruned = chosen ?? last
        if let best = monitor.bestStep { context.log("vulcan: the pruned model of step \(best) (best on validation)") }
        if let test = context.data.test {
            let before = try Self.subsetAccuracy(trained, on: test, classes: classes, backend: backend)
            let after = try Self.subsetAccuracy(pruned, on: test, classes: classes, backend: backend)
            metrics["before_surgery_accuracy"] = before.accuracy
            metrics["before_surgery_accuracy_restricted"] = before.restrictedAccuracy
            metrics["after_surgery_accuracy"] = after.accuracy
            metrics["after_surgery_accuracy_restricted"] = after.restrictedAccuracy
        }
        if options.compareFinetunedBase, let test = context.data.test {
            var basePhase = phase
            basePhase.checkpointPath = phase.checkpointPath.map { $0 + ".base" }
            let tuned = try basePhase.run(student: original, teacher: original, training: data, backend: backend,
                                          progress: context.progress, stopWhen: context.stopWhen)
            if tuned.stopped {
                return MethodOutcome(weights: tuned.weights, outcome: outcome(original), stopped: true)
            }
            let accuracy = try Self.subsetAccuracy(tuned.weights, on: test, classes: classes, backend: backend)
            metrics["finetuned_base_accuracy"] = accuracy.accuracy
            metrics["finetuned_base_accuracy_restricted"] = accuracy.restrictedAccuracy
            if let path = basePhase.checkpointPath { try? FileManager.default.removeItem(atPath: path) }
        }
        // The SVD kernels' share of the post-training: the batched eigen-decompositions against the steps' time.
        let trainSeconds = trainer.state.history.epochs.reduce(0) { $0 + $1.seconds }
        metrics["eigen_seconds"] = penalty.tail.eigenSeconds
        metrics["train_seconds"] = trainSeconds
        metrics["steps"] = Double(trainer.state.step)
        if trainSeconds > 0 {
            context.log("vulcan: eigen-decompositions \(Formatting.decimal1(penalty.tail.eigenSeconds * 1000)) ms of "
                        + "\(Formatting.decimal1(trainSeconds * 1000)) ms of steps (\(Formatting.percent(penalty.tail.eigenSeconds / trainSeconds)))")
        }
        var result = MethodOutcome(weights: pruned, outcome: outcome(pruned), history: trainer.state.history)
        result.metrics = metrics
        result.series = monitor.series
        return result
    }

    /// Accuracy of `weights` on the images of `classes` in `dataset`, over all outputs and over the subset's.
    public static func subsetAccuracy(_ weights: ViTWeights, on dataset: Dataset, classes: [Int], backend: Backend,
                                      batchSize: Int = 256) throws -> SubsetAccuracy {
        let config = weights.config
        let model = try VisionTransformer(weights: weights, backend: backend)
        let images = try dataset.subset(classes: classes.filter { $0 < dataset.classCount }, remap: false)
        var tally = SubsetAccuracy(outputClasses: (0 ..< config.classes).map(config.classId(ofOutput:)),
                                   subset: classes)
        // A pass like every other evaluation: progress, and Ctrl-C honoured at the next batch.
        let pass = PassMonitor.begin("subset evaluation", total: images.count)
        try model.logits(count: images.count, batchSize: batchSize, prepare: { range, staging in
            try images.prepare(range, into: staging)
        }, consume: { range, logits in
            tally.record(labels: range.map { images.label($0) }, logits: logits)
            try pass.advance(range.count)
        })
        pass.end()
        return tally
    }
}
