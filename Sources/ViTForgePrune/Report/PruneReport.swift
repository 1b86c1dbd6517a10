import Foundation
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// What `vitforge prune` (and the demo) write to `--report`: enough to reproduce the run and to compare it with
/// other runs without re-measuring. Keys follow DESIGN.md (`params`, `macs`, `accuracy` for original and pruned).
public struct PruneReport: Codable, Sendable {
    public struct ModelSummary: Codable, Sendable {
        public var path: String
        public var params: Int
        public var macs: Int
        /// Test accuracy (on `--classes` images when given); nil when not measured.
        public var accuracy: Double?
        public var perBlock: [BlockWidths]
        public var latency: [InferenceTiming]
        /// The token sets of a physically token-pruned model; nil (and no key) for a model that runs every block on
        /// every token.
        public var tokens: TokenSets? = nil

        enum CodingKeys: String, CodingKey {
            case path, params, macs, accuracy, latency
            case perBlock = "per_block"
            case tokens = "token_sets"
        }
    }

    /// Physical token pruning (`ViTConfig.tokenSets`): per block the token positions it runs on, and what is needed
    /// to draw them on the patch grid.
    public struct TokenSets: Codable, Equatable, Sendable {
        /// The full sequence's length (prefix tokens, then the patches row by row).
        public var tokens: Int
        /// Class and distillation tokens, positions 0..<prefixTokens (always kept).
        public var prefixTokens: Int
        /// Patches per side of the (square) patch grid.
        public var gridSide: Int
        /// Per block, ascending positions.
        public var sets: [[Int]]

        enum CodingKeys: String, CodingKey {
            case tokens, sets
            case prefixTokens = "prefix_tokens"
            case gridSide = "grid_side"
        }

        /// `config`'s token sets, nil when it has none.
        public init?(_ config: ViTConfig) {
            guard let sets = config.tokenSets else { return nil }
            self.init(tokens: config.tokens, prefixTokens: config.prefixTokens,
                      gridSide: config.imageSize / max(config.patchSize, 1), sets: sets)
        }

        public init(tokens: Int, prefixTokens: Int, gridSide: Int, sets: [[Int]]) {
            self.tokens = tokens
            self.prefixTokens = prefixTokens
            self.gridSide = gridSide
            self.sets = sets
        }

        /// Per patch (row by row), how many blocks, from the first, run on it: 0 for a patch the first block drops,
        /// the depth for one every block keeps (the sets shrink with depth, so a patch is kept by a prefix of them).
        public var blocksKeeping: [Int] {
            let patches = max(tokens - prefixTokens, 0)
            var counts = [Int](repeating: 0, count: patches)
            for set in sets {
                for position in set where position >= prefixTokens && position - prefixTokens < patches {
                    counts[position - prefixTokens] += 1
                }
            }
            return counts
        }
    }

    public struct BlockWidths: Codable, Sendable {
        public var heads: Int
        /// The widest head's q/k and v widths; every head's when they differ (`qkDims`, `vDims`).
        public var qkDim: Int
        public var vDim: Int
        public var qkDims: [Int]?
        public var vDims: [Int]?
        public var mlpHidden: Int
        public var attentionScale: Double

        enum CodingKeys: String, CodingKey {
            case heads
            case qkDim = "qk_dim"
            case vDim = "v_dim"
            case qkDims = "qk_dims"
            case vDims = "v_dims"
            case mlpHidden = "mlp_hidden"
            case attentionScale = "attention_scale"
        }
    }

    public var command: String
    public var version: String
    public var device: String
    public var seed: UInt64
    public var method: String
    public var budget: String
    public var original: ModelSummary
    public var pruned: ModelSummary
    /// Accuracy right after surgery (no fine-tuning) and after fine-tuning; the latter nil without fine-tuning.
    public var accuracyAfterPruning: Double?
    public var accuracyAfterFineTuning: Double?
    public var paramsFraction: Double
    public var macsFraction: Double
    /// Epochs of the method's own training phase (`--epochs`) and of fine-tuning after the cut.
    public var epochs: Int
    public var finetuneEpochs: Int
    /// KD from the unpruned model in every training phase.
    public var distill: Bool
    /// The method's own training phase, epoch by epoch (nil for methods without one).
    public var methodHistory: TrainingHistory?
    /// What the method learned or scored, as histograms by name (empty for most methods).
    public var histograms: [String: Histogram]
    /// The cuts of a method that prunes while it trains (CPD): step, blocks removed, cost after (nil otherwise).
    public var pruningSteps: [PruningStepRecord]?
    /// Wall time of each phase, seconds.
    public var seconds: [String: Double]
    /// The same phases in the order they ran (nil in reports written before it was recorded).
    public var phases: [PhaseTime]?
    /// Fine-tuning after the cut, epoch by epoch (nil without fine-tuning, and in older reports).
    public var finetuneHistory: TrainingHistory?
    /// A method's own numbers (Vulcan: subset accuracies of the base and of its model before and after surgery),
    /// and its own series over the training steps (Vulcan: constraint values and multipliers); nil when none.
    public var methodMetrics: [String: Double]?
    public var methodSeries: [String: [Double]]?
    /// `--compensate`: each refitted layer's output error before (plain cut, mean shift) and after the refit.
    public var compensation: [Compensation.LayerRecord]?
    /// The budget as the user asked for it (`--target-macs 0.3`; `budget` is what was reached), the data the
    /// accuracies were measured on and its class subset (`--classes`, nil: every class). Nil in older reports,
    /// which `EvaluationSet` and `askedBudget` then read from `command`.
    public var budgetAsked: String?
    public var data: String?
    public var classes: [Int]?
    /// The latency table the run read: the widths were rounded with it (`--round-to table`), a `--target-latency`
    /// was solved from it (`--latency-table` alone), or both (nil: no table).
    public var latencyTable: LatencyTableRecord?
    /// `--target-latency`: how it was met (the table's prediction, the measured latency, the shapes timed).
    public var latencySolve: LatencySolveRecord?

    /// Which latency table a run used: its file, the file's hash, and the machine and batch it was measured on.
    public struct LatencyTableRecord: Codable, Equatable, Sendable {
        public var path: String
        public var hash: String
        public var device: String
        public var batch: Int

        public init(_ loaded: LoadedLatencyTable) {
            path = loaded.path
            hash = loaded.hash
            device = loaded.table.device.summary
            batch = loaded.table.batch
        }
    }

    /// One phase's wall time, in the order of `phases`.
    public struct PhaseTime: Codable, Equatable, Sendable {
        public var name: String
        public var seconds: Double

        public init(name: String, seconds: Double) {
            self.name = name
            self.seconds = seconds
        }
    }

    /// `phases`, or for an older report the phases of `seconds` by name (their order was not kept).
    public var phasesInOrder: [PhaseTime] {
        phases ?? seconds.filter { $0.key != "total" }.sorted { $0.key < $1.key }
            .map { PhaseTime(name: $0.key, seconds: $0.value) }
    }

    enum CodingKeys: String, CodingKey {
        case command, version, device, seed, method, budget, original, pruned, seconds, distill, epochs
        case methodHistory = "method_history"
        case histograms, phases
        case pruningSteps = "pruning_steps"
        case finetuneHistory = "finetune_history"
        case accuracyAfterPruning = "accuracy_after_pruning"
        case accuracyAfterFineTuning = "accuracy_after_finetuning"
        case paramsFraction = "params_fraction"
        case macsFraction = "macs_fraction"
        case finetuneEpochs = "finetune_epochs"
        case methodMetrics = "method_metrics"
        case methodSeries = "method_series"
        case budgetAsked = "budget_asked"
        case data, classes, compensation
        case latencyTable = "latency_table"
        case latencySolve = "latency_solve"
    }

    public static func widths(_ config: ViTConfig) -> [BlockWidths] {
        config.blocks.map {
            BlockWidths(heads: $0.heads, qkDim: $0.qkDim, vDim: $0.vDim, qkDims: $0.headQKDims, vDims: $0.headVDims,
                        mlpHidden: $0.mlpHidden,
                        attentionScale: $0.attentionScale)
        }
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
