import ArgumentParser
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgePrune

extension RankingScope: ExpressibleByArgument {}
extension CompensationSettings.Order: ExpressibleByArgument {}

/// The flags of `vitforge prune` that mean the same for every method. Budgets are fractions KEPT; `--epochs` is the
/// method's own training phase, `--finetune-epochs` the fine-tuning after the cut, `--distill` KD from the unpruned
/// model in every training phase of the run.
struct PruneOptions: ParsableArguments {
    @Option(help: "The model to prune (safetensors, timm key names).")
    var model: String

    @Option(help: "Data for calibration, training and evaluation: fashion-mnist, an IDX folder or an ImageFolder.")
    var data = IDXDataset.fashionMNISTName

    @Option(help: ArgumentHelp("The pruning method: \(PruningMethods.all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")).",
                               valueName: "name"))
    var method = PruningMethods.all[0].name

    @Option(help: ArgumentHelp("Fraction of MLP neurons to keep. With no --keep-* and no --target-* (and no "
                               + "\(PruningMethods.ownBudgetFlags)) the run keeps \(Budget.defaultKeepMLP) and says "
                               + "so in its first line.",
                               valueName: "F"))
    var keepMlp: Double?

    @Option(help: "Fraction of attention heads to keep.")
    var keepHeads: Double?

    @Option(help: "Fraction of residual channels to keep.")
    var keepResidual: Double?

    @Option(help: "Keep this fraction of the original parameters (solved on the method's ratio).")
    var targetParams: Double?

    @Option(help: "Keep this fraction of the original MACs (solved on the method's ratio).")
    var targetMacs: Double?

    @Option(help: ArgumentHelp("Prune until one batch of --latency-batch images takes this long on this device "
                               + "(milliseconds, median of 7 runs; solved by bisection on the method's ratio, every "
                               + "shape tried timed). With --latency-table T the bisection predicts each shape from "
                               + "the table instead and times only the shape it settles on; a shape measured more "
                               + "than 10% (a shared machine's timing noise) off the target recalibrates the "
                               + "prediction on what was measured and solves again (at most 4 times), then every "
                               + "shape is timed as without a table. The report's latency_solve gives the "
                               + "prediction, the measurement and the shapes timed.",
                               valueName: "ms"))
    var targetLatency: Double?

    @Option(help: "Batch size of --target-latency.")
    var latencyBatch = 1

    @Option(help: ArgumentHelp(
        "K: keep counts in multiples of K (e.g. 8, for GEMM-friendly widths; 1, the default, keeps them as asked; "
            + "vulcan's default is 8, its paper's). "
            + "table: each MLP width and per-head q/k and v width goes to the width of --latency-table T that is "
            + "fastest per kept channel, never above the count the method asked for and never below 1: among the "
            + "measured widths w with count − max(8, count/8) < w ≤ count, the lowest latency(w)/w, and of those "
            + "within 2% of it the largest. Head counts and the residual width stay as asked. The rounding is the "
            + "budget's, for every method; a --target-* bisection rounds every shape it tries. vulcan rounds down "
            + "(multiples of K at or below its count, at least K), so its real pruning stays ≥ R; cpd lands every "
            + "cut on a rounded width (w − step rounded down).",
        valueName: "K|table"))
    var roundTo: RoundTo?

    @Option(help: ArgumentHelp("The layer latency table for --round-to table and for solving --target-latency (the "
                               + "same file serves both), made on this device (CPU, GEMM library, threads) for this "
                               + "model's shape by `vitforge bench --model M --batch B --latency-table T`; to solve a "
                               + "target, B must be --latency-batch (every method that solves a target by bisection; "
                               + "not cpd, which times its cuts while it trains). A table made elsewhere is refused.",
                               valueName: "T"))
    var latencyTable: String?

    @Option(help: "global: one ranking over all blocks (widths differ per block); block: the same fraction per block.")
    var scope = RankingScope.global

    @Option(help: "Calibration images (statistics, gradients): the first N training images (default: the method's).")
    var calibImages: Int?

    @Flag(inversion: .prefixedNo,
          help: ArgumentHelp("On by default for the one-shot methods, "
                             + "\(PruningMethods.list(reading: .compensation)). After the cut, refit by least squares "
                             + "on the calibration images (--calib-images; default the first "
                             + "\(CompensationSettings.defaultImages)) what consumes the pruned channels: every "
                             + "attn.proj and fc2 from the first changed one, block by block, on the pruned model's "
                             + "inputs towards the unpruned model's outputs, then the classifier (see "
                             + "--compensate-order). Residual channels and q/k dims are not refitted themselves (a "
                             + "residual channel feeds every LayerNorm; q/k enter the softmax bilinearly): the layers "
                             + "after them absorb what they can. --no-compensate: the plain cut (vbp: its mean "
                             + "shift). \(PruningMethods.list(reading: .compensation, false)) refuse --compensate "
                             + "and never compensate."))
    var compensate: Bool?

    @Option(help: ArgumentHelp("Which inputs --compensate refits each layer on. parallel: the unpruned model's, "
                               + "from one calibration pass. sequential: layer by layer in depth order, on the inputs "
                               + "of the model pruned and refitted so far, towards the unpruned model's outputs, then "
                               + "the classifier (one pass per layer; also answers a cut residual stream in part: "
                               + "every layer after it is refitted to the unpruned model). Default "
                               + "\(CompensationSettings.defaultOrder.rawValue).", valueName: "order"))
    var compensateOrder: CompensationSettings.Order?

    @Option(help: ArgumentHelp("Ridge of --compensate and of the costs of "
                               + "\(PruningMethods.list(reading: .compensationRidge)), relative to each layer's "
                               + "mean input variance (default \(LeastSquaresRefit.defaultRidge)).", valueName: "r"))
    var compensateRidge: Double?

    @Option(help: ArgumentHelp("Only these classes' images, comma-separated (calibration, training, evaluation).",
                               valueName: "list"))
    var classes: String?

    @Option(help: "Epochs of the method's own training phase (methods that train before or while they cut).")
    var epochs = 0

    @Option(help: "Peak learning rate of the method's own training phase.")
    var lr = 1e-4

    @Option(help: "Epochs of fine-tuning after the cut (every method).")
    var finetuneEpochs = 0

    @Option(help: "Peak learning rate of fine-tuning.")
    var finetuneLr = 1e-4

    @Flag(help: "Knowledge distillation from the unpruned model in every training phase of the run.")
    var distill = false

    @Option(help: ArgumentHelp("Share of each training class held out for validation by the methods that pick their "
                               + "result on it: \(PruningMethods.list(reading: .validationFraction)); never the "
                               + "test set.", valueName: "F"))
    var valFraction: Double?

    @Option(help: ArgumentHelp("Batch sizes at which to time both models for the report, comma-separated.",
                               valueName: "list"))
    var latencyBatches = "1,64"

    @Option(help: "Where to write the pruned model.")
    var out: String

    @Option(help: "Write the JSON report here.")
    var report: String?

    @Option(help: "Write the report as an HTML page here (what `vitforge report` draws).")
    var html: String?

    @Flag(help: ArgumentHelp("Continue an interrupted run from its checkpoints (OUT.METHOD.checkpoint.safetensors "
                             + "for the method's own training, OUT.checkpoint.safetensors for fine-tuning)."))
    var resume = false

    /// Whether the run compensates: `--compensate`/`--no-compensate` as given, else on for the methods that can
    /// (`SharedSetting.compensation`) unless the method's flags turn the default off
    /// (`MethodOptions.compensatesByDefault`: vbp's ablation --no-bias-fold).
    func compensates(methodDefault: Bool = true) -> Bool {
        compensate ?? (methodDefault && (PruningMethods.named(method)?.sharedSettings.contains(.compensation) ?? false))
    }

    /// The compensation as the pipeline's settings (nil when the run does not compensate); without
    /// --calib-images it reads at most `CompensationSettings.defaultImages`.
    func compensation(methodDefault: Bool = true) -> CompensationSettings? {
        compensates(methodDefault: methodDefault)
            ? CompensationSettings(ridge: compensateRidge ?? LeastSquaresRefit.defaultRidge,
                                   order: compensateOrder ?? CompensationSettings.defaultOrder,
                                   images: calibImages == nil ? CompensationSettings.defaultImages : nil) : nil
    }

    /// Whether no --keep-* or --target-* was given.
    var noBudgetGiven: Bool {
        keepMlp == nil && keepHeads == nil && keepResidual == nil && targetMacs == nil && targetParams == nil
            && targetLatency == nil
    }

    var budget: Budget {
        let target: Budget.Target? = targetMacs.map { .macs($0) } ?? targetParams.map { .params($0) }
            ?? targetLatency.map { .latency(milliseconds: $0, batch: latencyBatch) }
        var keepMLP = keepMlp
        // A method whose default budget is a setting of its own (`DefaultBudget.methodSetting`) gets none here.
        if noBudgetGiven, case .keepMLP(let fraction)? = PruningMethods.named(method)?.defaultBudget {
            keepMLP = fraction
        }
        let rounding: WidthRounding?
        switch roundTo {
        case .multiple(let k)?: rounding = .multiple(k)
        case .table?: rounding = .multiple(1)  // until `budget(for:on:)` reads the table
        case nil: rounding = nil  // the method's default
        }
        return Budget(keepMLP: keepMLP, keepHeads: keepHeads, keepResidual: keepResidual, target: target,
                      rounding: rounding)
    }

    /// The budget with the latency table read, checked against the model, the device and, for a latency target,
    /// the batch (`--round-to table`, `--target-latency` with `--latency-table`).
    func budget(for config: ViTConfig, on backend: Backend) throws -> Budget {
        var budget = self.budget
        if let latencyTable {
            let loaded = try LayerLatencyTable.load(path: latencyTable, for: config, on: .init(current: backend))
            if roundTo == .table { budget.rounding = .table(loaded) }
            if targetLatency != nil { budget.latencyTable = loaded }
            try budget.validate()
        }
        return budget
    }

    /// The method's own training phase's checkpoint.
    var methodCheckpointPath: String { out + ".\(method).checkpoint.safetensors" }

    func validate() throws {
        if PruningMethods.named(method) == nil {
            throw ValidationError("--method \(method): unknown; known: \(PruningMethods.names.joined(separator: ", "))")
        }
        if [targetMacs, targetParams, targetLatency].compactMap({ $0 }).count > 1 {
            throw ValidationError("give one of --target-macs, --target-params and --target-latency")
        }
        if latencyBatch < 1 { throw ValidationError("--latency-batch must be at least 1") }
        let fractions = [("--keep-mlp", keepMlp), ("--keep-heads", keepHeads), ("--keep-residual", keepResidual),
                         ("--target-params", targetParams), ("--target-macs", targetMacs)]
        for (flag, value) in fractions {
            if let value, !(value > 0 && value <= 1) {
                throw ValidationError("\(flag) \(value): a fraction kept, must be in (0, 1]")
            }
        }
        if let targetLatency, !(targetLatency > 0 && targetLatency.isFinite) {
            throw ValidationError("--target-latency \(targetLatency): milliseconds, must be positive")
        }
        do { try budget.validate() } catch { throw ValidationError("\(error)") }
        if roundTo == .table && latencyTable == nil {
            throw ValidationError("--round-to table and --latency-table T go together")
        }
        if latencyTable != nil && roundTo != .table && targetLatency == nil {
            throw ValidationError("--latency-table T is read by --round-to table and --target-latency: give one of them")
        }
        if epochs < 0 || finetuneEpochs < 0 { throw ValidationError("--epochs and --finetune-epochs must be ≥ 0") }
        if distill && epochs == 0 && finetuneEpochs == 0 {
            throw ValidationError("--distill needs a training phase: --epochs or --finetune-epochs ≥ 1")
        }
        if let compensateRidge {
            if !(compensateRidge >= 0 && compensateRidge.isFinite) {
                throw ValidationError("--compensate-ridge \(compensateRidge): must be ≥ 0")
            }
            let readers = PruningMethods.all.filter { $0.sharedSettings.contains(.compensationRidge) }
            if !compensates() && !readers.contains(where: { $0.name == method }) {
                throw ValidationError("--compensate-ridge has no effect without the compensation (--no-compensate, or a "
                                      + "method that does not compensate) unless --method "
                                      + readers.map { $0.name }.joined(separator: ", "))
            }
        }
        if compensateOrder != nil && !compensates() {
            throw ValidationError("--compensate-order has no effect without the compensation (--no-compensate, or a "
                                  + "method that does not compensate)")
        }
        if let valFraction, !(valFraction > 0 && valFraction < 1) {
            throw ValidationError("--val-fraction must be in (0, 1)")
        }
        _ = try parseClassList(classes)
        _ = try parseBatchList(latencyBatches)
    }
}

/// `--round-to`'s value: a multiple, or `table` (the widths come from `--latency-table`).
enum RoundTo: Equatable, ExpressibleByArgument {
    case multiple(Int)
    case table

    init?(argument: String) {
        if argument == "table" {
            self = .table
        } else if let k = Int(argument) {
            self = .multiple(k)
        } else {
            return nil
        }
    }

    var defaultValueDescription: String {
        switch self {
        case .multiple(let k): return String(k)
        case .table: return "table"
        }
    }
}
