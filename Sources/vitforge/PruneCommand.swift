import ArgumentParser
import Foundation
import ViTForgeData
import ViTForgeModel
import ViTForgePrune
import ViTForgeTrain

extension PruningPipeline.Method: ExpressibleByArgument {}
extension RankingScope: ExpressibleByArgument {}
extension VarianceBasedPruning.Score: ExpressibleByArgument {}

/// Structurally prunes a model: the result is physically smaller and loads everywhere with no extra flags.
struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Prune a ViT to a smaller one (VBP or a magnitude/Taylor/random baseline), optionally fine-tune it.",
        discussion: """
            Budgets are fractions KEPT: --keep-mlp 0.5 keeps half the MLP neurons; --target-macs 0.6 keeps 60% of \
            the original MACs (solved by bisection on the method's own ratio). The report (--report) holds params, \
            MACs, per-block widths, accuracy of the original / right after pruning / after fine-tuning, latency of \
            both models, the time of each phase, the command line and the version.
            Fine-tuning writes OUT.checkpoint.safetensors every 200 steps and on Ctrl-C; --resume continues it.
            """)

    @Option(help: "The model to prune (safetensors, timm key names).")
    var model: String

    @Option(help: "Data for calibration, fine-tuning and evaluation: fashion-mnist, an IDX folder or an ImageFolder.")
    var data = IDXDataset.fashionMNISTName

    @Option(help: "vbp (variance-based, with mean-shift bias fold), magnitude, taylor or random.")
    var method = PruningPipeline.Method.vbp

    @Option(help: "Fraction of MLP neurons to keep.")
    var keepMlp: Double?

    @Option(help: "Fraction of attention heads to keep.")
    var keepHeads: Double?

    @Option(help: "Fraction of residual channels to keep.")
    var keepResidual: Double?

    @Option(help: "Keep this fraction of the original parameters (solved on the method's ratio).")
    var targetParams: Double?

    @Option(help: "Keep this fraction of the original MACs (solved on the method's ratio).")
    var targetMacs: Double?

    @Option(help: "Keep counts in multiples of K (e.g. 8, for GEMM-friendly widths).")
    var roundTo = 1

    @Option(help: "global: one ranking over all blocks (widths differ per block); block: the same fraction per block.")
    var scope = RankingScope.global

    @Flag(help: "VBP without the mean-shift compensation (ablation).")
    var noBiasFold = false

    @Option(help: "VBP's ranking score: variance (the paper) or output-variance (variance × ‖fc2 column‖², the error the mean-shift fold leaves in the block output).")
    var vbpScore = VarianceBasedPruning.Score.variance

    @Option(help: "Calibration images (VBP statistics, Taylor gradients): the first N training images (default: all for VBP, 2048 for Taylor).")
    var calibImages: Int?

    @Option(help: "Taylor: accumulate gradients over this many batches of --batch-size (overrides --calib-images).")
    var calibBatches: Int?

    @Option(help: ArgumentHelp("Only these classes, comma-separated (calibration, fine-tuning and evaluation).",
                               valueName: "list"))
    var classes: String?

    @Option(help: "Epochs of fine-tuning after pruning.")
    var finetuneEpochs = 0

    @Flag(help: "Fine-tune with knowledge distillation from the unpruned model.")
    var distill = false

    @Option(help: "Peak learning rate of fine-tuning.")
    var finetuneLr = 1e-4

    @Option(help: "Distillation weight α.")
    var alpha = 0.5

    @Option(help: "Distillation temperature T.")
    var temperature = 2.0

    @Option(help: "Images per batch (calibration, fine-tuning).")
    var batchSize = 128

    @Option(help: ArgumentHelp("Batch sizes at which to time both models, comma-separated.", valueName: "list"))
    var latencyBatches = "1,64"

    @Option(help: "Where to write the pruned model.")
    var out: String

    @Option(help: "Write the JSON report here.")
    var report: String?

    @Flag(help: "Continue an interrupted fine-tuning from OUT.checkpoint.safetensors.")
    var resume = false

    @OptionGroup var heads: HeadsOption
    @OptionGroup var common: CommonOptions

    var budget: Budget {
        let target: Budget.Target? = targetMacs.map { .macs($0) } ?? targetParams.map { .params($0) }
        var keepMLP = keepMlp
        if keepMlp == nil && keepHeads == nil && keepResidual == nil && target == nil { keepMLP = 0.5 }
        return Budget(keepMLP: keepMLP, keepHeads: keepHeads, keepResidual: keepResidual, target: target,
                      roundTo: roundTo)
    }

    func validate() throws {
        if targetMacs != nil && targetParams != nil { throw ValidationError("give --target-macs or --target-params, not both") }
        do { try budget.validate() } catch { throw ValidationError("\(error)") }
        if method == .vbp && (keepHeads != nil || keepResidual != nil) {
            throw ValidationError("vbp prunes MLP neurons only; use --keep-mlp or a target")
        }
        if finetuneEpochs < 0 { throw ValidationError("--finetune-epochs must be ≥ 0") }
        if distill && finetuneEpochs == 0 { throw ValidationError("--distill needs --finetune-epochs ≥ 1") }
        _ = try parseClassList(classes)
        _ = try parseBatchList(latencyBatches)
    }

    func run() throws {
        try reportingErrors {
            let started = Date()
            let original = try ViTWeights.load(path: model, heads: heads.heads)
            let config = original.config
            let backend = try common.makeBackend()
            let splits = try Dataset.load(data, options: DatasetOptions(
                channels: config.inChannels, side: config.imageSize, classes: try parseClassList(classes),
                seed: common.seed))
            var calibration = calibImages
            if method == .taylor { calibration = calibBatches.map { $0 * batchSize } ?? calibImages ?? 2048 }
            let progress = ProgressPrinter()
            let pipeline = PruningPipeline(
                method: method, budget: budget, scope: scope, biasFold: !noBiasFold, vbpScore: vbpScore,
                calibrationImages: calibration,
                batchSize: batchSize,
                fineTuning: finetuneEpochs == 0 ? nil : FineTuning(
                    epochs: finetuneEpochs, batchSize: batchSize, learningRate: finetuneLr, distill: distill,
                    alpha: alpha, temperature: temperature, seed: common.seed,
                    checkpointPath: checkpointPath(for: out), resume: resume, protectedInputs: [model]),
                latencyBatches: try parseBatchList(latencyBatches) ?? [1, 64], seed: common.seed)
            StopSignal.installInterruptHandler()
            let outcome = try pipeline.run(
                original: original, originalPath: model, prunedPath: out, data: splits, backend: backend,
                command: CommandLine.arguments.joined(separator: " "), version: VitForge.version,
                hooks: .init(progress: { progress.report($0) }))
            progress.finish()
            if outcome.stopped {
                print("interrupted; continue with --resume (checkpoint \(checkpointPath(for: out)))")
                throw ExitCode(130)
            }
            try outcome.weights.save(to: out)
            try? FileManager.default.removeItem(atPath: checkpointPath(for: out))
            var report = outcome.report
            report.seconds["total"] = Date().timeIntervalSince(started)
            if let path = self.report {
                try AtomicFile.write(report.jsonData(), to: path, protecting: [model])
            }
            printComparison(report)
            print("wrote \(out)" + (self.report.map { " and \($0)" } ?? ""))
        }
    }
}

/// `1,64,256` → [1, 64, 256].
func parseBatchList(_ text: String?) throws -> [Int]? {
    guard let text else { return nil }
    return try text.split(separator: ",").map { part in
        guard let value = Int(part.trimmingCharacters(in: .whitespaces)), value >= 1 else {
            throw ValidationError("\"\(part)\" is not a batch size")
        }
        return value
    }
}

/// The before/after table the prune and demo commands end with.
func printComparison(_ report: PruneReport) {
    func percent(_ value: Double?) -> String { value.map { String(format1: $0 * 100) + "%" } ?? "n/a" }
    func millions(_ value: Int) -> String { String(format1: Double(value) / 1e6) + "M" }
    let rows: [(String, String, String)] = [
        ("accuracy", percent(report.original.accuracy), percent(report.pruned.accuracy)),
        ("params", millions(report.original.params), millions(report.pruned.params)
            + " (\(String(format1: report.paramsFraction * 100))%)"),
        ("MACs/image", millions(report.original.macs), millions(report.pruned.macs)
            + " (\(String(format1: report.macsFraction * 100))%)"),
        ("MLP widths", report.original.perBlock.map { String($0.mlpHidden) }.joined(separator: ","),
         report.pruned.perBlock.map { String($0.mlpHidden) }.joined(separator: ",")),
    ] + zip(report.original.latency, report.pruned.latency).map { before, after in
        ("images/s @\(before.batch)", String(format1: before.imagesPerSecond),
         String(format1: after.imagesPerSecond) + " (×\(String(format1: after.imagesPerSecond / before.imagesPerSecond)))")
    }
    print("")
    print("                   original        pruned")
    for (name, before, after) in rows {
        print(name.padding(18) + " " + before.padding(15) + " " + after)
    }
    if let direct = report.accuracyAfterPruning, report.accuracyAfterFineTuning != nil {
        print("(accuracy right after pruning, before fine-tuning: \(percent(direct)))")
    }
}
