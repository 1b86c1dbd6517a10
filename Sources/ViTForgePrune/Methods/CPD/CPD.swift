import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport
import ViTForgeTrain

/// CPD — Comb, Prune, Distill (Schmitt et al., ITSC 2024; METHODS.md §4). Comb: the dependency groups come from the
/// layer graph by CPD's coupling/stop rules (`Comb`, checked against the role table on every use). Prune: while the
/// model trains (`--epochs`, optionally distilling from the frozen unpruned model), every `--prune-interval` steps
/// the Fisher scores of the groups' virtual masks (`FisherScores`, accumulated since the last cut) pick the single
/// cheapest block of the least important space — 32 MLP neurons, `heads` residual channels, or one q/k or v dim per
/// head of a block — and the model shrinks physically at once (`Trainer.replaceModel` slices the moments). Heads are
/// never removed or re-partitioned, the attention scale stays, and the residual width shrinks with LayerNorm over
/// the kept channels only (§4.c's traps). At the target the pruning stops and training continues to the end; the
/// validation split (never the test set) picks the epoch whose model is returned.
///
/// One cut per interval is CPD; when the run is too short for that to reach the target by `finishFraction` of its
/// steps, a cut removes several blocks (each the least important left), just enough to stay on a straight line from
/// the current cost to the target at that point: a long run prunes exactly as CPD does.
///
/// `--round-to K` / `table`: every cut lands the width of the space it cuts on a rounded width (a step goes from w
/// to the rounding of w − step, downwards: `WidthRounding.roundedDown`), so wherever the pruning stops each width is
/// a multiple of K or a width the table's rule picked (or the space's floor, or never cut). `--round-to 1`, the
/// default, cuts exactly CPD's steps.
public struct CPD: PruningMethod {
    public static let name = "cpd"
    public static let summary = "CPD: while training (with --distill), every N steps remove the least important "
        + "block by the Fisher of channel masks — MLP neurons, residual width, q/k or v dims — until the target"
    public static let hasTrainingPhase = true
    public static let sharedSettings: Set<SharedSetting> = [.validationFraction]
    public static let settingNotes: [SharedSetting: String] = [.validationFraction: "the epoch, default 0.05"]

    public struct Options: Equatable, Sendable {
        /// Steps between cuts (CPD's `interval`).
        public var pruneInterval: Int
        /// MLP neurons removed by one cut (CPD's FFN group size).
        public var mlpStep: Int
        /// Residual channels removed by one cut; nil: the most heads of any block (CPD's ViT residual group size).
        public var residualStep: Int?
        /// The share of the run's steps by which the target must be reached (the rest trains the final shape).
        public var finishFraction: Double
        /// Share of each training class held out for validation when the data has no validation split.
        public var validationFraction: Double

        public init(pruneInterval: Int = 50, mlpStep: Int = 32, residualStep: Int? = nil,
                    finishFraction: Double = 0.75, validationFraction: Double = 0.05) {
            self.pruneInterval = pruneInterval
            self.mlpStep = mlpStep
            self.residualStep = residualStep
            self.finishFraction = finishFraction
            self.validationFraction = validationFraction
        }
    }

    public var options: Options

    public init(options: Options = Options()) { self.options = options }

    public func problem(with budget: Budget, epochs: Int) -> String? {
        if epochs < 1 { return "cpd prunes while it trains: give --epochs N (≥ 1)" }
        // The table may round cpd's cuts (--round-to table), but cpd times the model at each cut: it solves nothing.
        if budget.latencyTable != nil {
            if case .table? = budget.requestedRounding {} else {
                return "cpd times the model at each cut while it trains: --latency-table does not solve its "
                    + "--target-latency (with --round-to table it rounds the cuts)"
            }
        }
        if budget.target == nil || !budget.keepFractions.isEmpty {
            return "cpd prunes toward one target: give --target-macs, --target-params or --target-latency (and no --keep-*)"
        }
        if options.pruneInterval < 1 { return "--prune-interval must be at least 1" }
        if options.mlpStep < 1 || (options.residualStep ?? 1) < 1 { return "pruning steps must be at least 1" }
        if !(options.finishFraction > 0 && options.finishFraction <= 1) { return "--prune-until must be in (0, 1]" }
        if !(options.validationFraction >= 0 && options.validationFraction < 1) {
            return "--val-fraction must be in [0, 1)"
        }
        return nil
    }

    public func checkReach(_ budget: Budget, config: ViTConfig) throws {
        let smallest = try Schedule.smallest(config, options: options, rounding: budget.rounding)
        let cost = smallest.cost(), original = config.cost()
        switch budget.target {
        case .macs(let r)? where Double(cost.macs) / Double(original.macs) > r,
             .params(let r)? where Double(cost.parameters) / Double(original.parameters) > r:
            throw PruneError.invalidBudget("target \(r) is out of reach for cpd: its smallest model (MLP "
                + "\(BlockConfig.widths(smallest.blocks.map(\.mlpHidden))) neurons, residual \(smallest.residualWidth), "
                + "q/k \(BlockConfig.widths(smallest.blocks.flatMap(\.qkDims))) and v "
                + "\(BlockConfig.widths(smallest.blocks.flatMap(\.vDims))) dims per head) keeps "
                + "\(Formatting.percent(Double(cost.macs) / Double(original.macs))) of the MACs and "
                + "\(Formatting.percent(Double(cost.parameters) / Double(original.parameters))) of the parameters")
        default: break
        }
    }

    public func prune(_ context: PruningContext) throws -> MethodOutcome {
        var training = context.data.training
        var validation = context.data.validation
        let validationFraction = context.validationFraction ?? options.validationFraction
        if validation == nil && validationFraction > 0 {
            let split = try training.splitValidation(fraction: validationFraction, seed: context.seed)
            (training, validation) = (split.training, split.validation)
        }
        let phase = context.training
        let trainer = try phase.makeTrainer(student: context.original, teacher: context.original,
                                            training: training, backend: context.backend)
        let deadline = Int((Double(trainer.totalSteps) * options.finishFraction).rounded(.down))
        guard deadline >= options.pruneInterval else {
            throw PruneError.invalidBudget("--prune-interval \(options.pruneInterval) is longer than the pruning "
                + "window (\(deadline) of the run's \(trainer.totalSteps) steps): lower it or train longer")
        }
        let pruner = try GradualPruner(original: context.original.config, budget: context.budget, options: options,
                                       deadline: deadline, latency: context.latency, backend: context.backend,
                                       log: context.log)
        trainer.hooks = [pruner]
        let bestPath = phase.bestCheckpointPath
        trainer.checkpoints.bestPath = bestPath
        var bestInMemory: ViTWeights?
        if let validation {
            let batch = max(context.batchSize, 256)
            let accuracyOf = { (model: VisionTransformer) in
                try Evaluator.tally(model, on: validation, batchSize: batch).accuracy
            }
            pruner.validate = accuracyOf
            trainer.evaluate = { [unowned pruner, unowned trainer] model, epoch in
                let accuracy = try accuracyOf(model)
                context.log("\(Self.name) epoch \(epoch): validation \(Formatting.percent(accuracy)), "
                            + "\(Formatting.percent(pruner.macsFraction(model.config))) of the MACs"
                            + (pruner.reached ? "" : " (target not reached yet: not a candidate)"))
                // Only models at the target compete for the checkpoint.
                guard pruner.reached else { return Evaluation(metric: nil, accuracy: accuracy) }
                if bestPath == nil, accuracy > (trainer.state.history.bestMetric ?? -.infinity) {
                    bestInMemory = try model.hostWeights()
                }
                return Evaluation(metric: accuracy, accuracy: accuracy)
            }
        }
        let stopped = try context.train(trainer)
        let last = try trainer.model.hostWeights()
        if stopped { return MethodOutcome(weights: last, outcome: BudgetOutcome(original: context.original.config,
                                                                                pruned: last.config), stopped: true) }
        guard pruner.reached else {
            throw PruneError.invalidBudget("the run ended before the target was reached: train longer or lower "
                                           + "--prune-interval")
        }
        var weights = last
        let history = trainer.state.history
        if let bestEpoch = history.bestEpoch {
            if let bestPath, FileManager.default.fileExists(atPath: bestPath) {
                weights = try ViTWeights.load(path: bestPath)
            } else if let bestInMemory {
                weights = bestInMemory
            }
            context.log("\(Self.name): epoch \(bestEpoch) has the best validation accuracy at the target")
        }
        var outcome = BudgetOutcome(original: context.original.config, pruned: weights.config,
                                    target: context.budget.target)
        if case .latency? = context.budget.target { outcome.measuredLatencyMilliseconds = pruner.lastMeasured }
        return MethodOutcome(weights: weights, outcome: outcome, history: history, pruningSteps: pruner.events)
    }
}

extension CPD {
    /// Which blocks a cut may remove from a model, and the smallest model the steps allow.
    enum Schedule {
        static func residualStep(_ config: ViTConfig, options: Options) -> Int {
            options.residualStep ?? max(1, config.blocks.map(\.heads).max() ?? 1)
        }

        /// Residual channels, MLP neurons and per-head dims no cut goes below.
        static func floors(_ original: ViTConfig, options: Options) -> (residual: Int, mlp: [Int]) {
            (min(original.residualWidth, 2 * residualStep(original, options: options)),
             original.blocks.map { min($0.mlpHidden, options.mlpStep) })
        }

        /// The width a cut of `step` channels leaves of `left` in a space of `kind` (`size` wide before this cut):
        /// `left − step` rounded down, never below `floor`. The cut removes `left` minus it (none when it is not
        /// below `left`: the rounding's smallest width is reached).
        static func next(_ left: Int, step: Int, floor: Int, size: Int, kind: SpaceKind,
                         rounding: WidthRounding) -> Int {
            max(floor, rounding.roundedDown(left - step, size: size, kind: kind))
        }

        /// The narrowest `width` cuts of `step` can reach.
        static func narrowest(_ width: Int, step: Int, floor: Int, kind: SpaceKind, rounding: WidthRounding) -> Int {
            var current = width
            while true {
                let cut = next(current, step: step, floor: floor, size: current, kind: kind, rounding: rounding)
                guard cut < current else { return current }
                current = cut
            }
        }

        static func smallest(_ config: ViTConfig, options: Options, rounding: WidthRounding = .multiple(1)) throws
            -> ViTConfig {
            let floors = floors(config, options: options)
            var smallest = config
            smallest.residualWidth = narrowest(config.residualWidth, step: residualStep(config, options: options),
                                               floor: floors.residual, kind: .residual, rounding: rounding)
            for b in config.blocks.indices {
                let block = config.blocks[b]
                func dims(_ widths: [Int], _ kind: SpaceKind) -> [Int] {
                    widths.map { narrowest($0, step: 1, floor: 1, kind: kind, rounding: rounding) }
                }
                smallest.blocks[b] = BlockConfig(
                    qkDims: dims(block.qkDims, .qkDims(block: b)), vDims: dims(block.vDims, .vDims(block: b)),
                    mlpHidden: narrowest(block.mlpHidden, step: options.mlpStep, floor: floors.mlp[b],
                                         kind: .mlpHidden(block: b), rounding: rounding),
                    attentionScale: block.attentionScale)
            }
            return smallest
        }
    }

    /// The training hook that prunes: scores after every backward, cuts every `pruneInterval` steps until the
    /// target, with its scores, cuts and position in the checkpoint.
    final class GradualPruner: TrainingHook {
        let name = "cpd"
        var changesShape: Bool { true }

        let original: ViTConfig
        let budget: Budget
        let options: Options
        let deadline: Int
        let latency: LatencyMeter?
        let backend: Backend
        let log: (String) -> Void
        /// Validation accuracy of a model, for the trajectory (nil: no validation split).
        var validate: ((VisionTransformer) throws -> Double)?
        private(set) var scores: FisherScores
        /// What the current model keeps, in the original model's numbering.
        private(set) var kept: KeepPlan
        private(set) var events: [PruningStepRecord] = []
        private(set) var reached = false
        private(set) var lastMeasured: Double?

        init(original: ViTConfig, budget: Budget, options: Options, deadline: Int, latency: LatencyMeter?,
             backend: Backend, log: @escaping (String) -> Void) throws {
            self.original = original
            self.budget = budget
            self.options = options
            self.deadline = deadline
            self.latency = latency
            self.backend = backend
            self.log = log
            scores = try FisherScores(config: original, backend: backend)
            kept = KeepPlan(keepingAllOf: original)
        }

        func macsFraction(_ config: ViTConfig) -> Double {
            Double(config.cost().macs) / Double(original.cost().macs)
        }

        /// What the target measures for `config`, and the target itself: fractions of the original's parameters
        /// or MACs, or milliseconds.
        func measure(_ config: ViTConfig) throws -> (value: Double, goal: Double) {
            switch budget.target {
            case .params(let r)?:
                return (Double(config.cost().parameters) / Double(original.cost().parameters), r)
            case .macs(let r)?:
                return (macsFraction(config), r)
            case .latency(let milliseconds, _)?:
                guard let latency else { throw PruneError.invalidBudget("a latency target needs a device to measure on") }
                let value = try latency.milliseconds(config)
                lastMeasured = value
                return (value, milliseconds)
            case nil:
                throw PruneError.invalidBudget("cpd needs a target")
            }
        }

        func afterBackward(_ trainer: Trainer) throws {
            if !reached { try scores.accumulate(trainer.model) }
        }

        func afterStep(_ trainer: Trainer) throws {
            let step = trainer.state.step
            guard !reached, step % options.pruneInterval == 0 else { return }
            try cut(trainer, step: step)
        }

        /// One cut: the least important blocks, as many as keep the cost on a straight line to the target at the
        /// deadline (at least one), then the surgery on the live model.
        func cut(_ trainer: Trainer, step: Int) throws {
            let current = trainer.model.config
            let cutsLeft = max(1, (deadline - step) / options.pruneInterval + 1)
            var (value, goal) = try measure(current)
            if value <= goal {
                reached = true
                return
            }
            let waypoint = goal + (value - goal) * Double(cutsLeft - 1) / Double(cutsLeft)
            var selection = Selection(config: current, scores: scores.normalized(), options: options,
                                      floors: Schedule.floors(original, options: options), rounding: budget.rounding)
            var removed: [String] = []
            var plan = KeepPlan(keepingAllOf: current)
            var pruned = current
            repeat {
                guard let block = selection.cheapest() else {
                    throw PruneError.invalidBudget("cpd: nothing left to prune at step \(step) before the target "
                                                   + "(every space is at its floor)")
                }
                removed.append(block)
                plan = try selection.plan()
                pruned = try plan.prunedConfig(of: current)
                // A measured latency changes with every block; the cost fractions are exact.
                value = try measure(pruned).value
            } while value > waypoint
            let weights = try Surgery.prune(try trainer.model.hostWeights(), plan: plan)
            try trainer.replaceModel(with: weights, elementSources: try Surgery.elementSources(current, plan: plan))
            kept = try Self.compose(kept, with: plan, original: original)
            scores = try FisherScores(config: pruned, backend: backend)
            reached = value <= goal
            let cost = pruned.cost(), base = original.cost()
            let accuracy = try validate?(trainer.model)
            events.append(PruningStepRecord(
                step: step, removed: removed, params: cost.parameters, macs: cost.macs,
                paramsFraction: Double(cost.parameters) / Double(base.parameters),
                macsFraction: Double(cost.macs) / Double(base.macs), validationAccuracy: accuracy))
            log("cpd step \(step): removed \(removed.joined(separator: ", ")); "
                + "\(Formatting.percent(events.last?.macsFraction)) of the MACs"
                + (accuracy.map { ", validation \(Formatting.percent($0))" } ?? "")
                + (reached ? " — target reached, training on" : ""))
        }

        /// `plan` (numbered in `current`'s channels) applied after `kept` (numbered in the original's).
        static func compose(_ kept: KeepPlan, with plan: KeepPlan, original: ViTConfig) throws -> KeepPlan {
            var result = kept
            result.residual = plan.residual.map { kept.residual[$0] }
            for b in kept.blocks.indices {
                let before = kept.blocks[b], after = plan.blocks[b]
                result.blocks[b].mlpHidden = after.mlpHidden.map { before.mlpHidden[$0] }
                result.blocks[b].heads = after.heads.map { head in
                    let previous = before.heads[head.head]
                    return HeadKeep(head: previous.head, qkDims: head.qkDims.map { previous.qkDims[$0] },
                                    vDims: head.vDims.map { previous.vDims[$0] })
                }
            }
            return result
        }

        // MARK: Checkpoint

        struct Saved: Codable {
            var scores: FisherScores.SavedState
            var kept: [[Int]]
            var keptHeads: [[[[Int]]]]
            var events: [PruningStepRecord]
            var reached: Bool
        }

        func checkpointState() throws -> HookState {
            let saved = Saved(scores: scores.saved, kept: [kept.residual] + kept.blocks.map(\.mlpHidden),
                              keptHeads: kept.blocks.map { $0.heads.map { [[$0.head], $0.qkDims, $0.vDims] } },
                              events: events, reached: reached)
            let data = try JSONEncoder().encode(saved)
            return HookState(json: String(decoding: data, as: UTF8.self))
        }

        func restore(_ state: HookState, trainer: Trainer) throws {
            let saved = try JSONDecoder().decode(Saved.self, from: Data(state.json.utf8))
            guard saved.kept.count == original.depth + 1, saved.keptHeads.count == original.depth else {
                throw PruneError.planMismatch("saved cpd state is for a model of another depth")
            }
            var plan = KeepPlan(keepingAllOf: original)
            plan.residual = saved.kept[0]
            for b in 0 ..< original.depth {
                plan.blocks[b].mlpHidden = saved.kept[b + 1]
                plan.blocks[b].heads = try saved.keptHeads[b].map { parts in
                    guard parts.count == 3, parts[0].count == 1 else {
                        throw PruneError.planMismatch("saved cpd heads are malformed")
                    }
                    return HeadKeep(head: parts[0][0], qkDims: parts[1], vDims: parts[2])
                }
            }
            guard try plan.prunedConfig(of: original) == trainer.model.config else {
                throw PruneError.planMismatch("saved cpd plan does not give the checkpoint's model")
            }
            kept = plan
            scores = try FisherScores(config: trainer.model.config, backend: backend)
            try scores.restore(saved.scores)
            events = saved.events
            reached = saved.reached
        }
    }

    /// The greedy choice inside one cut: candidate blocks per space, each the sum of its lowest channel scores,
    /// the cheapest removed, repeatedly (scores of removed channels leave the race). A block takes a space from its
    /// width w to `Schedule.next` (w − step, rounded down by `rounding`).
    struct Selection {
        let config: ViTConfig
        var scores: [SpaceKind: [Double]]
        let options: Options
        let floors: (residual: Int, mlp: [Int])
        let rounding: WidthRounding
        /// Channels removed so far in this cut, per space (group indices of `config`).
        var removed: [SpaceKind: Set<Int>] = [:]

        init(config: ViTConfig, scores: [SpaceKind: [Double]], options: Options, floors: (residual: Int, mlp: [Int]),
             rounding: WidthRounding = .multiple(1)) {
            self.config = config
            self.scores = scores
            self.options = options
            self.floors = floors
            self.rounding = rounding
        }

        /// The cheapest candidate's channels, per space.
        func candidates() -> [(kind: SpaceKind, indices: [Int], cost: Double)] {
            var result: [(SpaceKind, [Int], Double)] = []
            func lowest(_ kind: SpaceKind, among indices: [Int], count: Int) -> [Int] {
                let values = scores[kind] ?? []
                let left = indices.filter { !(removed[kind]?.contains($0) ?? false) }
                return Array(left.sorted { (values[$0], $0) < (values[$1], $1) }.prefix(count))
            }
            func add(_ kind: SpaceKind, _ indices: [Int]) {
                let values = scores[kind] ?? []
                result.append((kind, indices, indices.reduce(0) { $0 + values[$1] }))
            }
            func count(_ left: Int, step: Int, floor: Int, size: Int, kind: SpaceKind) -> Int {
                left - Schedule.next(left, step: step, floor: floor, size: size, kind: kind, rounding: rounding)
            }
            let residualLeft = config.residualWidth - (removed[.residual]?.count ?? 0)
            let residualCount = count(residualLeft, step: Schedule.residualStep(config, options: options),
                                      floor: floors.residual, size: config.residualWidth, kind: .residual)
            if residualCount > 0 {
                add(.residual, lowest(.residual, among: Array(0 ..< config.residualWidth), count: residualCount))
            }
            for (b, block) in config.blocks.enumerated() {
                let mlp = SpaceKind.mlpHidden(block: b)
                let mlpCount = count(block.mlpHidden - (removed[mlp]?.count ?? 0), step: options.mlpStep,
                                     floor: floors.mlp[b], size: block.mlpHidden, kind: mlp)
                if mlpCount > 0 { add(mlp, lowest(mlp, among: Array(0 ..< block.mlpHidden), count: mlpCount)) }
                guard block.heads > 0 else { continue }
                let layout = QKVLayout(block)
                for (kind, widths, offsets) in [(SpaceKind.qkDims(block: b), layout.qkDims, layout.qkOffsets),
                                                (SpaceKind.vDims(block: b), layout.vDims, layout.vOffsets)] {
                    // One dim (or down to the rounded width) from every head, or none: heads keep at least one.
                    let perHead = (0 ..< block.heads).map { h -> [Int] in
                        let dims = Array(offsets[h] ..< offsets[h] + widths[h])
                        let left = dims.filter { !(removed[kind]?.contains($0) ?? false) }.count
                        let cut = count(left, step: 1, floor: 1, size: widths[h], kind: kind)
                        return cut > 0 ? lowest(kind, among: dims, count: cut) : []
                    }
                    if perHead.allSatisfy({ !$0.isEmpty }) { add(kind, perHead.flatMap { $0 }) }
                }
            }
            return result
        }

        /// Removes the cheapest candidate; returns its description, or nil when every space is at its floor.
        mutating func cheapest() -> String? {
            let all = candidates()
            guard let best = all.indices.min(by: { (all[$0].cost, $0) < (all[$1].cost, $1) }) else { return nil }
            removed[all[best].kind, default: []].formUnion(all[best].indices)
            return "\(all[best].kind) −\(all[best].indices.count)"
        }

        /// The keep plan (in `config`'s numbering) of everything removed so far.
        func plan() throws -> KeepPlan {
            var plan = KeepPlan(keepingAllOf: config)
            for (kind, gone) in removed {
                // A space's scores are one per group: their count is the space's size.
                let count = scores[kind]?.count ?? 0
                try plan.keep((0 ..< count).filter { !gone.contains($0) }, in: kind, of: config)
            }
            return plan
        }
    }
}
