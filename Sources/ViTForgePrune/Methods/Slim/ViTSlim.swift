import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport
import ViTForgeTrain

/// ViT-Slim (Chavan et al., CVPR 2022; METHODS.md §2): learn soft masks, initialised to 1, on every head's attention
/// dims (one value on the q, k and v of a dim) and on every MLP neuron after GELU, jointly with the weights, under an
/// ℓ1 penalty that drives unneeded entries towards 0 (§2.b). Any budget is then one global threshold per module
/// type over the learned values (§2.b), so one search serves every budget. Unlike the released code, which snaps the
/// kept masks to 1 and retrains for 300 epochs, the learned values are folded into the weights (§2.g): the extracted
/// model computes exactly what the soft-masked model computed with the removed entries at 0.
public struct ViTSlim: PruningMethod {
    public static let name = "slim"
    public static let summary = "ViT-Slim: search soft masks on attention dims and MLP neurons under an ℓ1 penalty, "
        + "cut every budget by one threshold per module type, fold the masks into the weights"
    public static let hasTrainingPhase = true
    /// The cut after the search is one-shot: `--compensate` refits it.
    public static let sharedSettings: Set<SharedSetting> = [.compensation]
    public static let settingNotes: [SharedSetting: String] = [.compensation: "its cut"]

    public struct Options: Equatable, Sendable {
        /// How attention mask values spread over a block's dims (§2.b: per head and dim, per head, per dim index).
        public var granularity: AttentionMaskGranularity
        /// Effective ℓ1 coefficients on the per-batch-mean loss: the paper's 2e-4 and 5e-5 divided by its 4 GPUs.
        public var attentionPenalty: Double
        public var mlpPenalty: Double
        /// The DeiT loss's label smoothing during the search (§2.b).
        public var searchLabelSmoothing: Double
        /// Fraction of attention mask entries kept (nil: the MLP fraction).
        public var keepAttention: Double?
        /// With a target, attention keeps `min(1, ratio · r)` when the MLP keeps r.
        public var attentionToMLPRatio: Double
        /// Fold the learned values into the weights (exact); false snaps them to 1 (the released code, for ablation).
        public var fold: Bool
        /// Where to keep the searched model and masks, and where to read them instead of searching.
        public var saveSearch: String?
        public var fromSearch: String?
        /// Fraction of the patch-token mask entries kept (ViTSlimTokens.swift); nil: tokens are neither searched
        /// nor cut. With a target, the tokens stay at this fraction and the target solves attention and MLP.
        public var keepTokens: Double?
        /// Effective ℓ1 coefficient on tanh(ρ): the paper's 1e-4 over its 4 GPUs.
        public var tokenPenalty: Double = 2.5e-5
        /// Multiplies the learning rate of ρ.
        public var tokenLearningRateScale: Double = 1
        /// Peak learning rate of the attention and MLP masks (the weights' schedule, scaled); nil: the weights'.
        public var maskLearningRate: Double? = Self.defaultMaskLearningRate
        /// How the ℓ1 weights move over the search (ViTSlimPenaltySchedule.swift), the extra weight at its peak, and
        /// the share of the search over which it ramps up from 0.
        public var penaltySchedule: SlimPenaltySchedule = Self.defaultPenaltySchedule
        public var penaltyPeak: Double = Self.defaultPenaltyPeak
        public var penaltyRampFraction: Double = Self.defaultPenaltyRampFraction

        public static let defaultMaskLearningRate: Double? = 5e-3
        public static let defaultPenaltySchedule = SlimPenaltySchedule.budget
        public static let defaultPenaltyPeak = 1e-2
        public static let defaultPenaltyRampFraction = 0.5

        public init(granularity: AttentionMaskGranularity = .dim, attentionPenalty: Double = 5e-5,
                    mlpPenalty: Double = 1.25e-5, searchLabelSmoothing: Double = 0.1, keepAttention: Double? = nil,
                    attentionToMLPRatio: Double = 1, fold: Bool = true, saveSearch: String? = nil,
                    fromSearch: String? = nil) {
            self.granularity = granularity
            self.attentionPenalty = attentionPenalty
            self.mlpPenalty = mlpPenalty
            self.searchLabelSmoothing = searchLabelSmoothing
            self.keepAttention = keepAttention
            self.attentionToMLPRatio = attentionToMLPRatio
            self.fold = fold
            self.saveSearch = saveSearch
            self.fromSearch = fromSearch
        }
    }

    public var options: Options

    public init(options: Options = Options()) { self.options = options }

    /// The learned values: per block, attention (`QKVLayout.maskCount(granularity)`) and MLP (`mlpHidden`).
    public struct Masks: Equatable, Sendable {
        public var granularity: AttentionMaskGranularity
        public var attention: [[Float]]
        public var mlp: [[Float]]
        /// Per block, tanh(ρ) of every token position (nil: tokens not searched).
        public var tokens: [[Float]]?

        public init(granularity: AttentionMaskGranularity, attention: [[Float]], mlp: [[Float]],
                    tokens: [[Float]]? = nil) {
            self.granularity = granularity
            self.attention = attention
            self.mlp = mlp
            self.tokens = tokens
        }

        /// All ones: the search's start (§2.d).
        public init(ones config: ViTConfig, granularity: AttentionMaskGranularity) {
            self.granularity = granularity
            attention = config.blocks.map {
                [Float](repeating: 1, count: QKVLayout($0).maskCount(granularity))
            }
            mlp = config.blocks.map { [Float](repeating: 1, count: $0.mlpHidden) }
        }
    }

    public func problem(with budget: Budget, epochs: Int) -> String? {
        if budget.keepFractions.keys.contains(where: { $0 != .mlpHidden }) {
            return "slim prunes attention dims (--keep-attn) and MLP neurons (--keep-mlp); not heads or residual"
        }
        if epochs == 0 && options.fromSearch == nil {
            return "slim needs a search: --epochs N, or --from-search S to cut a saved one"
        }
        if epochs > 0 && options.fromSearch != nil { return "--from-search skips the search: drop --epochs" }
        if let keep = options.keepAttention, !(keep > 0 && keep <= 1) {
            return "--keep-attn \(keep) must be in (0, 1]"
        }
        if !(options.attentionToMLPRatio > 0) { return "--attn-mlp-ratio must be positive" }
        if let keep = options.keepTokens, !(keep > 0 && keep <= 1) { return "--keep-tokens \(keep) must be in (0, 1]" }
        if let rate = options.maskLearningRate, !(rate > 0 && rate.isFinite) {
            return "--slim-mask-lr \(rate) must be positive"
        }
        if !(options.penaltyPeak >= 0 && options.penaltyPeak.isFinite) {
            return "--slim-penalty-peak \(options.penaltyPeak) must be ≥ 0"
        }
        if !(options.penaltyRampFraction > 0 && options.penaltyRampFraction <= 1) {
            return "--slim-penalty-ramp \(options.penaltyRampFraction) must be in (0, 1]"
        }
        return nil
    }

    public func checkReach(_ budget: Budget, config: ViTConfig) throws {
        // The token search masks every position of every block; a token-pruned model's later blocks have fewer rows.
        if options.keepTokens != nil && config.tokenSets != nil {
            throw PruneError.invalidBudget("--keep-tokens: the model is already token-pruned (token sets in its "
                + "config); search the tokens of the model it was cut from, or drop --keep-tokens")
        }
        for (b, block) in config.blocks.enumerated() where QKVLayout(block).qkvColumnIndices(options.granularity) == nil {
            throw PruneError.invalidBudget("block \(b): \(options.granularity.rawValue) masks need each head's q/k "
                + "and v widths equal\(options.granularity == .sharedDim ? " and equal heads" : "")")
        }
    }

    // MARK: 1. Search

    public func prune(_ context: PruningContext) throws -> MethodOutcome {
        let searched: (weights: ViTWeights, masks: Masks, history: TrainingHistory?, stopped: Bool)
        if let path = options.fromSearch {
            let saved = try Self.readSearch(path)
            guard saved.masks.granularity == options.granularity else {
                throw PruneError.invalidBudget("\(path): searched with \(saved.masks.granularity.rawValue) masks, "
                                               + "not \(options.granularity.rawValue)")
            }
            searched = (saved.weights, saved.masks, nil, false)
            context.log("slim: masks from \(path)")
        } else {
            searched = try search(context)
            if searched.stopped {
                return MethodOutcome(weights: searched.weights,
                                     outcome: BudgetOutcome(original: context.original.config,
                                                            pruned: searched.weights.config),
                                     stopped: true, history: searched.history)
            }
            // Rank 0 writes the files of a data-parallel run.
            if let path = options.saveSearch, Collectives.world.isMain {
                try Self.writeSearch(searched.weights, masks: searched.masks, to: path,
                                     protecting: context.training.protectedInputs)
                context.log("slim: searched model and masks written to \(path)")
            }
        }
        let (cut, outcome, kept) = try plannedCut(searched.weights, masks: searched.masks, context: context)
        let weights = try Surgery.prune(cut.source, plan: cut.plan)
        var histograms = [
            "slim attention masks": Histogram(searched.masks.attention.flatMap { $0 }.map(Double.init)),
            "slim MLP masks": Histogram(searched.masks.mlp.flatMap { $0 }.map(Double.init)),
        ]
        if let tokens = searched.masks.tokens {
            let prefix = context.original.config.prefixTokens
            histograms["slim token masks"] = Histogram(tokens.flatMap { $0.dropFirst(prefix) }.map(Double.init))
        }
        var result = MethodOutcome(weights: weights, outcome: outcome, history: searched.history, histograms: histograms)
        result.cut = cut
        result.metrics = Self.separation(searched.masks, kept: kept, tokenSets: cut.source.config.tokenSets,
                                         prefixTokens: context.original.config.prefixTokens)
        return result
    }

    /// Trains weights and masks together under the ℓ1 penalty (§2.b) with the trainer `vitforge train` uses.
    func search(_ context: PruningContext) throws
        -> (weights: ViTWeights, masks: Masks, history: TrainingHistory?, stopped: Bool) {
        var phase = context.training
        phase.labelSmoothing = options.searchLabelSmoothing
        let trainer = try phase.makeTrainer(student: context.original, teacher: context.original,
                                            training: context.data.training, backend: context.backend)
        let maskScale = options.maskLearningRate.map { $0 / phase.learningRate } ?? 1
        let masks = try SearchMasks(trainer: trainer, granularity: options.granularity, learningRateScale: maskScale)
        let tokenMasks = options.keepTokens == nil ? nil
            : try SearchTokenMasks(trainer: trainer, learningRateScale: options.tokenLearningRateScale)
        let penalty = try SparsityPenalty(masks: masks, attention: options.attentionPenalty, mlp: options.mlpPenalty,
                                          schedule: options.penaltySchedule, peak: options.penaltyPeak,
                                          rampFraction: options.penaltyRampFraction)
        if options.penaltySchedule == .budget {
            let original = context.original
            penalty.keptSets = { values in
                var current = values
                current.tokens = try tokenMasks?.values()
                return try? self.keptEntries(original, masks: current, context: context)
            }
        }
        trainer.terms = [penalty]
        // After every step (the optimizer moved the learned values) and after a resume: the column multipliers again.
        trainer.hooks = [MaskRefresh(name: "slim_columns", refresh: masks.gatherColumns)]
        if let tokenMasks {
            trainer.terms.append(TokenSparsityPenalty(masks: tokenMasks, weight: options.tokenPenalty))
            trainer.hooks.append(MaskRefresh(name: "slim_tokens", refresh: tokenMasks.refresh))
        }
        var searchContext = context
        searchContext.training = phase
        let stopped = try searchContext.train(trainer)
        var values = try masks.values()
        values.tokens = try tokenMasks?.values()
        return (try trainer.model.hostWeights(), values, trainer.state.history, stopped)
    }

    // MARK: 2. Select: one threshold per module type

    /// Entries kept of every block for one module type: those ≥ the value at index ⌊(1 − keep)·count⌋ of all
    /// blocks' values sorted ascending (§2.b).
    public static func kept(_ values: [[Float]], keep: Double) -> [[Bool]] {
        let all = values.flatMap { $0 }.sorted()
        guard !all.isEmpty else { return values.map { $0.map { _ in true } } }
        let index = min(all.count - 1, max(0, Int((1 - keep) * Double(all.count))))
        let threshold = all[index]
        return values.map { $0.map { $0 >= threshold } }
    }

    /// The entries the plan of fractions `attention` and `mlp` keeps: one threshold per module type; an MLP keeps
    /// at least its best neuron.
    static func keptEntries(_ masks: Masks, attention: Double, mlp: Double) -> RemovedEntryPenalty.KeptSets {
        var keptMLP = kept(masks.mlp, keep: mlp)
        for b in keptMLP.indices where !keptMLP[b].contains(true) {
            if let best = masks.mlp[b].indices.max(by: { masks.mlp[b][$0] < masks.mlp[b][$1] }) {
                keptMLP[b][best] = true  // an MLP is never emptied
            }
        }
        return (kept(masks.attention, keep: attention), keptMLP)
    }

    /// The keep plan of fractions `attention` and `mlp` of the mask entries: a head keeps the dims whose entry is
    /// kept (the same dims for q/k and v; a head with none disappears); an MLP keeps at least its best neuron.
    /// `rounding` (`--round-to`) then rounds each MLP's count and each remaining head's dim count, keeping the
    /// highest entries (head masks have no dim count to round; a head's dims are rounded as q/k dims, their v dims
    /// following).
    public static func plan(_ masks: Masks, config: ViTConfig, attention: Double, mlp: Double,
                            rounding: WidthRounding = .multiple(1)) throws -> KeepPlan {
        var plan = KeepPlan(keepingAllOf: config)
        let (keptAttention, keptMLP) = keptEntries(masks, attention: attention, mlp: mlp)
        for (b, block) in config.blocks.enumerated() {
            let layout = QKVLayout(block)
            var qk: [Int] = [], v: [Int] = []
            for h in 0 ..< block.heads {
                func entry(_ d: Int) -> Int {
                    masks.granularity == .dim ? layout.qkOffsets[h] + d : masks.granularity == .head ? h : d
                }
                var dims = (0 ..< layout.qkDims[h]).filter { keptAttention[b][entry($0)] }
                if !dims.isEmpty && masks.granularity != .head {
                    dims = highest(dims.count, of: layout.qkDims[h], rounding: rounding, kind: .qkDims(block: b),
                                   value: { masks.attention[b][entry($0)] }) ?? dims
                }
                qk += dims.map { layout.qkOffsets[h] + $0 }
                v += dims.map { layout.vOffsets[h] + $0 }
            }
            try plan.keep(qk, in: .qkDims(block: b), of: config)
            try plan.keep(v, in: .vDims(block: b), of: config)
            var neurons = (0 ..< block.mlpHidden).filter { keptMLP[b][$0] }
            neurons = highest(neurons.count, of: block.mlpHidden, rounding: rounding, kind: .mlpHidden(block: b),
                              value: { masks.mlp[b][$0] }) ?? neurons
            try plan.keep(neurons, in: .mlpHidden(block: b), of: config)
        }
        return plan
    }

    /// The `rounding` of `count` out of `size` entries as the highest-valued ones (ties: lower index), ascending;
    /// nil when rounding leaves the count as it is (the threshold's own choice stands).
    private static func highest(_ count: Int, of size: Int, rounding: WidthRounding, kind: SpaceKind,
                                value: (Int) -> Float) -> [Int]? {
        let target = rounding.rounded(count, size: size, kind: kind)
        guard target != count else { return nil }
        return (0 ..< size).sorted { (value($0), -$0) > (value($1), -$1) }.prefix(target).sorted()
    }

    // MARK: 3. Fold and cut

    /// The searched model with the learned values folded into the weights (§2.g): each qkv row times its column's
    /// mask value (q and k rows of a dim both, so q·kᵀ carries z² as the masked model did; v rows once; biases
    /// too), each fc2 column times its neuron's. The result computes the soft-masked model exactly.
    public static func folded(_ weights: ViTWeights, masks: Masks) throws -> ViTWeights {
        var result = weights
        for (name, factors) in try foldFactors(weights.config, masks: masks) {
            guard let tensor = weights[name] else { continue }
            try result.setValues(name, zip(tensor.values, factors).map { $0 * $1 })
        }
        return result
    }

    /// What folding multiplies each element of each affected tensor by: qkv weight rows and bias by their
    /// column's mask value, fc2 columns by their neuron's.
    public static func foldFactors(_ config: ViTConfig, masks: Masks) throws -> [String: [Float]] {
        let width = config.residualWidth
        var factors: [String: [Float]] = [:]
        for (b, block) in config.blocks.enumerated() {
            guard let indices = QKVLayout(block).qkvColumnIndices(masks.granularity) else {
                throw PruneError.planMismatch("block \(b): the masks' granularity does not fit its heads")
            }
            let columns = indices.map { masks.attention[b][$0] }
            let prefix = "blocks.\(b)."
            factors[prefix + "attn.qkv.weight"] = columns.flatMap { [Float](repeating: $0, count: width) }
            if config.qkvBias { factors[prefix + "attn.qkv.bias"] = columns }
            factors[prefix + "mlp.fc2.weight"] = (0 ..< width).flatMap { _ in masks.mlp[b] }
        }
        return factors
    }

    /// Solves the budget on the masks (one fraction per module type, or a target by bisection on both), then
    /// folds (unless `fold` is off) and cuts.
    func extract(_ weights: ViTWeights, masks: Masks, context: PruningContext) throws -> (ViTWeights, BudgetOutcome) {
        let (cut, outcome, _) = try plannedCut(weights, masks: masks, context: context)
        return (try Surgery.prune(cut.source, plan: cut.plan), outcome)
    }

    /// The plan and the (folded) weights `extract` cuts, and the attention and MLP entries the plan keeps.
    func plannedCut(_ weights: ViTWeights, masks: Masks, context: PruningContext) throws
        -> (PlannedCut, BudgetOutcome, RemovedEntryPenalty.KeptSets) {
        // The token sets are fixed by --keep-tokens; the plan (and a target) then counts every block on its tokens.
        let tokenPruned = try Self.withTokenSets(weights, masks: masks, keep: options.keepTokens)
        let (plan, outcome, fractions) = try solvedPlan(masks, config: tokenPruned.config, original: weights.config,
                                                        latency: context.latency, budget: context.budget)
        let source = options.fold ? try Self.folded(tokenPruned, masks: masks) : tokenPruned
        return (PlannedCut(source: source, plan: plan), outcome,
                Self.keptEntries(masks, attention: fractions.attention, mlp: fractions.mlp))
    }

    /// The budget solved on the masks: the plan, its outcome and the two fractions of entries it keeps.
    func solvedPlan(_ masks: Masks, config: ViTConfig, original: ViTConfig, latency: LatencyMeter?, budget: Budget)
        throws -> (KeepPlan, BudgetOutcome, (attention: Double, mlp: Double)) {
        let ratio = options.attentionToMLPRatio
        if budget.target != nil {
            var budget = budget
            budget.keepFractions = [:]
            let (plan, outcome) = try budget.solve(config: config, nativeFamilies: [.mlpHidden], latency: latency,
                                                   original: original) { fractions in
                let r = fractions[.mlpHidden] ?? 1
                return try Self.plan(masks, config: config, attention: min(1, ratio * r), mlp: r,
                                     rounding: budget.rounding)
            }
            let r = outcome.nativeRatio ?? 1
            return (plan, outcome, (min(1, ratio * r), r))
        }
        let mlp = budget.keepFractions[.mlpHidden] ?? 1, attention = options.keepAttention ?? mlp
        let plan = try Self.plan(masks, config: config, attention: attention, mlp: mlp, rounding: budget.rounding)
        return (plan, BudgetOutcome(original: original, pruned: try plan.prunedConfig(of: config)), (attention, mlp))
    }

    /// What the cut would keep if the search stopped at `masks` (the `budget` penalty schedule's kept sets). A
    /// latency target would time shapes at every step, and a timing differs between a run and its resume: with one,
    /// every entry counts as removed (the schedule then pushes as `ramp` does).
    func keptEntries(_ original: ViTWeights, masks: Masks, context: PruningContext) throws
        -> RemovedEntryPenalty.KeptSets {
        if case .latency = context.budget.target {
            return (masks.attention.map { $0.map { _ in false } }, masks.mlp.map { $0.map { _ in false } })
        }
        var config = original.config
        if let keep = options.keepTokens, let tokens = masks.tokens {
            config.tokenSets = Self.tokenSets(tokens, keep: keep, config: config)
        }
        let (_, _, fractions) = try solvedPlan(masks, config: config, original: original.config, latency: nil,
                                               budget: context.budget)
        return Self.keptEntries(masks, attention: fractions.attention, mlp: fractions.mlp)
    }

    // MARK: Saved searches

    static let searchKey = "vitforge.slim"
    static func attentionName(_ b: Int) -> String { "slim.attention.\(b)" }
    static func mlpName(_ b: Int) -> String { "slim.mlp.\(b)" }

    /// The searched model (its timm names, loadable as a model) with the masks as extra tensors.
    public static func writeSearch(_ weights: ViTWeights, masks: Masks, to path: String,
                                   protecting inputs: [String] = []) throws {
        var tensors = weights.namedTensors()
        for b in masks.attention.indices {
            tensors.append(NamedTensor(name: attentionName(b), shape: [masks.attention[b].count],
                                       floats: masks.attention[b]))
            tensors.append(NamedTensor(name: mlpName(b), shape: [masks.mlp[b].count], floats: masks.mlp[b]))
            if let tokens = masks.tokens?[b] {
                tensors.append(NamedTensor(name: tokenName(b), shape: [tokens.count], floats: tokens))
            }
        }
        try SafetensorsWriter.write(tensors, metadata: [ViTConfig.metadataKey: weights.config.jsonString(),
                                                        searchKey: masks.granularity.rawValue],
                                    to: path, protecting: inputs)
    }

    public static func readSearch(_ path: String) throws -> (weights: ViTWeights, masks: Masks) {
        let file = try SafetensorsFile(path: path)
        guard let text = file.metadata[searchKey], let granularity = AttentionMaskGranularity(rawValue: text) else {
            throw ModelFileError(file: path, key: searchKey, .invalidConfig("not a ViT-Slim search (no \(searchKey))"))
        }
        let weights = try ViTWeights(file: file, allowExtraTensors: true)
        var attention: [[Float]] = [], mlp: [[Float]] = []
        for (b, block) in weights.config.blocks.enumerated() {
            let counts = [QKVLayout(block).maskCount(granularity), block.mlpHidden]
            for (name, count) in zip([attentionName(b), mlpName(b)], counts) {
                guard file.contains(name) else { throw ModelFileError(file: path, key: name, .missingKey) }
                let values = try file.floats(name)
                guard values.count == count else {
                    throw ModelFileError(file: path, key: name, .wrongShape(expected: [count], actual: [values.count]))
                }
                if name == attentionName(b) { attention.append(values) } else { mlp.append(values) }
            }
        }
        var tokens: [[Float]]?
        if file.contains(tokenName(0)) {
            tokens = try weights.config.blocks.indices.map { b in
                let values = try file.floats(tokenName(b))
                guard values.count == weights.config.tokens else {
                    throw ModelFileError(file: path, key: tokenName(b),
                                         .wrongShape(expected: [weights.config.tokens], actual: [values.count]))
                }
                return values
            }
        }
        return (weights, Masks(granularity: granularity, attention: attention, mlp: mlp, tokens: tokens))
    }
}

// MARK: The search's pieces (the platform's seams: slots, a term, a hook)

/// The learned masks of a search: per block an attention value buffer (an optimizer slot), the qkv column
/// multipliers gathered from it for the model's forward, and an MLP value buffer (a slot, and the model's mask).
final class SearchMasks {
    struct Block {
        let attention: Buffer          // [maskCount], learned
        let attentionGradient: Buffer  // [maskCount]
        let columns: Buffer            // [qkvRows], gather(attention)
        let columnGradient: Buffer     // [qkvRows], the model's mask gradient
        let columnIndices: Buffer      // [qkvRows] Int32
        let indices: [Int]
        let segmentOffsets: Buffer     // [maskCount + 1] Int32: value v's columns are segmentMembers[offsets[v] ..<]
        let segmentMembers: Buffer     // [qkvRows] Int32, the columns grouped by value
        let mlp: Buffer                // [mlpHidden], learned
        let mlpGradient: Buffer        // [mlpHidden]
    }

    let backend: Backend
    let granularity: AttentionMaskGranularity
    let blocks: [Block]

    init(trainer: Trainer, granularity: AttentionMaskGranularity, learningRateScale: Double = 1) throws {
        let model = trainer.model
        backend = model.backend
        self.granularity = granularity
        blocks = try model.config.blocks.enumerated().map { b, block in
            guard let indices = QKVLayout(block).qkvColumnIndices(granularity) else {
                throw PruneError.planMismatch("block \(b): \(granularity.rawValue) masks do not fit its heads")
            }
            let count = QKVLayout(block).maskCount(granularity)
            var members = [[Int32]](repeating: [], count: count)
            for (column, index) in indices.enumerated() { members[index].append(Int32(column)) }
            let offsets = members.reduce(into: [Int32(0)]) { $0.append($0.last! + Int32($1.count)) }
            return Block(attention: try model.backend.makeBuffer([Float](repeating: 1, count: count)),
                         attentionGradient: try model.backend.zeros(count),
                         columns: try model.backend.allocate(block.qkvRows),
                         columnGradient: try model.backend.zeros(block.qkvRows),
                         columnIndices: try model.backend.makeBuffer(indices.map(Int32.init)), indices: indices,
                         segmentOffsets: try model.backend.makeBuffer(offsets),
                         segmentMembers: try model.backend.makeBuffer(members.flatMap { $0 }),
                         mlp: try model.backend.makeBuffer([Float](repeating: 1, count: block.mlpHidden)),
                         mlpGradient: try model.backend.zeros(block.mlpHidden))
        }
        for (b, block) in blocks.enumerated() {
            // No weight decay on masks (§2.g: the released code decays them); the weights' learning rate times
            // `learningRateScale` (--slim-mask-lr). A block without heads has no attention values.
            if block.attention.count > 0 {
                try trainer.optimizer.addSlot(name: "slim.attention.\(b)", shape: [block.attention.count],
                                              parameter: block.attention, gradient: block.attentionGradient,
                                              learningRateScale: learningRateScale)
            }
            try trainer.optimizer.addSlot(name: "slim.mlp.\(b)", shape: [block.mlp.count], parameter: block.mlp,
                                          gradient: block.mlpGradient, learningRateScale: learningRateScale)
        }
        try gatherColumns()
        try model.setMasks(blocks.map {
            BlockMasks(qkv: ChannelMask(values: $0.columns, gradient: $0.columnGradient),
                       mlpHidden: ChannelMask(values: $0.mlp, gradient: $0.mlpGradient))
        })
    }

    /// The column multipliers from the learned values (before every forward: the values change every step).
    func gatherColumns() throws {
        for block in blocks {
            try backend.gather(src: block.attention, indices: block.columnIndices, dst: block.columns,
                               count: block.indices.count)
        }
    }

    /// Each learned value's gradient: the sum of its columns' gradients (q, k and v of a dim; every column of a
    /// head), on the device; then the column gradients are zeroed for the next step.
    func reduceColumnGradients() throws {
        for block in blocks {
            try backend.segmentSum(block.columnGradient, offsets: block.segmentOffsets, members: block.segmentMembers,
                                   dst: block.attentionGradient, segments: block.attention.count)
            try backend.fill(block.columnGradient, value: 0, offset: 0, count: block.indices.count)
        }
    }

    func values() throws -> ViTSlim.Masks {
        ViTSlim.Masks(granularity: granularity, attention: try blocks.map { try backend.read($0.attention) },
                      mlp: try blocks.map { try backend.read($0.mlp) })
    }
}

/// `w_attn·Σ|z_attn| + w_mlp·Σ|z_mlp|` (§2.b), its subgradient `w·sign(z)` added after the task loss's backward,
/// which first moves the model's column gradients onto the learned attention values; plus the schedule's extra
/// weight (ViTSlimPenaltySchedule.swift) on every entry (`ramp`) or on the entries `keptSets` leaves out (`budget`).
final class SparsityPenalty: TrainingTerm {
    let name = "slim_l1"
    let masks: SearchMasks
    let attention: Double, mlp: Double
    let schedule: SlimPenaltySchedule
    let peak: Double, rampFraction: Double
    /// `budget`: the entries the budget keeps at the given values (nil when it cannot be solved on them yet, e.g.
    /// while ties at the start leave no threshold that meets a target: nothing is pushed then).
    var keptSets: ((ViTSlim.Masks) throws -> RemovedEntryPenalty.KeptSets?)?
    /// `budget`: per block, scratch for the extra gradient of the attention and the MLP values.
    let scratch: [(attention: Buffer?, mlp: Buffer)]

    init(masks: SearchMasks, attention: Double, mlp: Double, schedule: SlimPenaltySchedule = .constant,
         peak: Double = 0, rampFraction: Double = 1) throws {
        self.masks = masks
        self.attention = attention
        self.mlp = mlp
        self.schedule = schedule
        self.peak = peak
        self.rampFraction = rampFraction
        scratch = schedule != .budget ? [] : try masks.blocks.map {
            ($0.attention.count > 0 ? try masks.backend.allocate($0.attention.count) : nil,
             try masks.backend.allocate($0.mlp.count))
        }
    }

    func addGradient(_ trainer: Trainer) throws -> Double {
        try masks.reduceColumnGradients()
        let backend = masks.backend
        let extra = schedule == .constant ? 0
            : peak * SlimPenaltySchedule.ramp(step: trainer.state.step, totalSteps: trainer.totalSteps,
                                              rampFraction: rampFraction)
        let everyEntry = schedule == .ramp ? extra : 0
        var value = 0.0
        for block in masks.blocks {
            for (values, gradient, weight) in [(block.attention, block.attentionGradient, attention + everyEntry),
                                               (block.mlp, block.mlpGradient, mlp + everyEntry)] {
                // The value is read back (it is logged with the loss); the subgradient stays on the device.
                value += weight * (try backend.sumOfAbs(values, count: values.count))
                try backend.addScaledSign(values, alpha: Float(weight), y: gradient, count: values.count)
            }
        }
        guard schedule == .budget, extra > 0, let keptSets else { return value }
        let current = try masks.values()
        guard let kept = try keptSets(current) else { return value }
        for (b, block) in masks.blocks.enumerated() {
            if let attentionScratch = scratch[b].attention {
                value += try RemovedEntryPenalty.add(values: current.attention[b], kept: kept.attention[b],
                                                     extra: extra, gradient: block.attentionGradient,
                                                     scratch: attentionScratch, backend: backend)
            }
            value += try RemovedEntryPenalty.add(values: current.mlp[b], kept: kept.mlp[b], extra: extra,
                                                 gradient: block.mlpGradient, scratch: scratch[b].mlp,
                                                 backend: backend)
        }
        return value
    }
}
