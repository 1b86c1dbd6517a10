import ArgumentParser
import Foundation
import ViTForgeData
import ViTForgeFormats
import ViTForgeModel
import ViTForgePrune
import ViTForgeTrain

/// Structurally prunes a model: the result is physically smaller and loads everywhere with no extra flags.
struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Prune a ViT to a smaller one with a registered method, optionally train and fine-tune it.",
        discussion: """
            Budgets are fractions KEPT: --keep-mlp 0.5 keeps half the MLP neurons; --target-macs 0.6 keeps 60% of \
            the original MACs; --target-latency 12 --latency-batch 64 prunes until a batch of 64 takes 12 ms on \
            this device (targets are solved by bisection on the method's own ratio). The report (--report) holds \
            params, MACs, per-block widths, accuracy of the original / right after pruning / after fine-tuning, \
            latency of both models, the time of each phase, the command line and the version.
            Training phases write checkpoints every 200 steps and on Ctrl-C; --resume continues them.
            Example, ViT-Slim: search once (1 epoch), cut at 50% of the MLP neurons and 60% of the attention dims, \
            fine-tune 2 epochs with distillation, and keep the search to cut other budgets without searching again:
              vitforge prune --model M --method slim --epochs 1 \\
                --keep-mlp 0.5 --keep-attn 0.6 --save-search S.safetensors \\
                --finetune-epochs 2 --distill --out P.safetensors
              vitforge prune --model M --method slim \\
                --from-search S.safetensors --target-macs 0.3 --out P30.safetensors
            Example, CPD: train 3 epochs with distillation, cutting the least important block (MLP neurons, \
            residual channels, q/k or v dims) every 50 steps until 25% of the MACs, then training on:
              vitforge prune --model M --method cpd --epochs 3 --distill --target-macs 0.25 --out P.safetensors
            Example, Vulcan: a model for 3 classes (by index or name) that removes R = 0.6 of the MLP neurons and \
            attention dims (Vulcan's --prune-ratio is the share REMOVED, as in the paper), post-trained 2 epochs \
            on those classes' images under its constraints, the best cut (every 50 steps, on a validation split \
            of the subset's training images) kept, the classifier trimmed to the 3 classes:
              vitforge prune --model M --method vulcan \\
                --classes T-shirt/top,pullover,shirt --prune-ratio 0.6 --epochs 2 \\
                --eval-every 50 --trim-head --out P.safetensors
              vitforge eval --model P.safetensors --classes 0,2,6 --json E.json
            """)

    @OptionGroup var options: PruneOptions
    @OptionGroup var training: TrainingFlags
    @OptionGroup var methodGroups: MethodOptionGroups
    @OptionGroup var heads: HeadsOption
    @OptionGroup var dataLoading: DataLoadingOptions
    @OptionGroup var preprocessing: PreprocessOptions
    @OptionGroup var common: CommonOptions

    /// Every method's option group; each registered method is served by exactly one (a CLI test checks).
    var methodOptions: [any MethodOptions] { methodGroups.groups }

    func methodGroup() throws -> any MethodOptions {
        guard let group = methodGroups.group(for: options.method) else {
            throw ValidationError("--method \(options.method) has no option group")
        }
        return group
    }

    func validate() throws {
        try MethodFlags.check(CommandLine.arguments, method: options.method, groups: methodOptions)
        try MethodFlags.checkSharedSettings(CommandLine.arguments, method: options.method)
        if let problem = try methodGroup().problem(compensate: options.compensate) { throw ValidationError(problem) }
        try MethodFlags.checkTrainingFlags(CommandLine.arguments, epochs: options.epochs,
                                           finetuneEpochs: options.finetuneEpochs, distill: options.distill)
        let method = try methodGroup().method(named: options.method)
        if let problem = method.problem(with: options.budget, epochs: options.epochs) {
            throw ValidationError(problem)
        }
        if options.resume && !FileManager.default.fileExists(atPath: checkpointPath(for: options.out))
            && !FileManager.default.fileExists(atPath: options.methodCheckpointPath) {
            throw ValidationError("--resume: no checkpoint \(checkpointPath(for: options.out)) or "
                                  + "\(options.methodCheckpointPath) to continue from")
        }
    }

    /// What the run reads and writes, checked before any work.
    var files: CommandFiles {
        CommandFiles(
            inputs: [.init("--model", options.model), .init("--data", options.data)]
                + methodOptions.flatMap { $0.inputFiles }.map { CommandFiles.Named($0.flag, $0.path) },
            outputs: [.init("--out", options.out), .init("--report", options.report), .init("--html", options.html)]
                + methodOptions.flatMap { $0.outputFiles }.map { CommandFiles.Named($0.flag, $0.path) }
                + [.init("checkpoint", checkpointPath(for: options.out)),
                   .init("checkpoint", options.methodCheckpointPath)])
    }

    /// The budget flags as given (with the default when none was), for the report's budget column: the fractions
    /// kept (the methods' --keep-* too), the targets, then the methods' other budget flags.
    var askedBudget: String {
        let methodFlags = methodOptions.flatMap { $0.budgetFlags }
        let values: [(String, Double?)] = [
            ("--keep-mlp", options.keepMlp), ("--keep-heads", options.keepHeads),
            ("--keep-residual", options.keepResidual),
        ] + methodFlags.filter { $0.flag.hasPrefix("--keep-") } + [
            ("--target-params", options.targetParams), ("--target-macs", options.targetMacs),
            ("--target-latency", options.targetLatency),
        ] + methodFlags.filter { !$0.flag.hasPrefix("--keep-") }
        var parts = values.compactMap { flag, value in value.map { "\(flag) \($0)" } }
        if options.targetLatency != nil { parts.append("--latency-batch \(options.latencyBatch)") }
        if parts.isEmpty, let defaultBudget = PruningMethods.named(options.method)?.defaultBudget {
            switch defaultBudget {
            case .keepMLP(let fraction): parts = ["--keep-mlp \(fraction) (default)"]
            case .methodSetting(let flag, let value, _): parts = ["\(flag) \(value) (default)"]
            }
        }
        // Given and not the default of every method; for a method with a default of its own (vulcan), given.
        let methodRounding = PruningMethods.named(options.method)?.defaultRounding ?? .multiple(1)
        if let roundTo = options.roundTo, roundTo != .multiple(1) || methodRounding != .multiple(1) {
            parts.append("--round-to \(roundTo.defaultValueDescription)")
        }
        return parts.joined(separator: " ")
    }

    /// The first line of a run given no budget: what it will keep instead of keeping something silently.
    var defaultBudgetLine: String? {
        guard options.noBudgetGiven, let defaultBudget = PruningMethods.named(options.method)?.defaultBudget else {
            return nil
        }
        switch defaultBudget {
        case .keepMLP(let fraction):
            return "budget: none given; keeping \(Formatting.percent(fraction)) of the MLP neurons "
                + "(--keep-mlp \(fraction), the default)"
        case .methodSetting(let flag, let value, let meaning):
            guard !MethodFlags.given(CommandLine.arguments).contains(flag) else { return nil }
            return "budget: none given; \(options.method) \(meaning), \(flag) \(value)"
        }
    }

    func run() throws {
        try reportingErrors {
            try files.check()
            if let line = defaultBudgetLine { print(line) }
            try common.onDevice { backend, fellBack in
                let started = Date()
                let options = self.options
                let group = try methodGroup()
                let method = try group.method(named: options.method)
                let dataClasses = try parseClassList(options.classes, data: options.data)
                var original = try ViTWeights.load(path: options.model, heads: heads.heads)
                // Calibration, evaluation and the training phases prepare images as the model was trained; the
                // pruned model keeps the same preprocessing (surgery copies the config).
                let preprocess = try preprocessing.resolve(for: original.config, modelPath: options.model,
                                                           data: options.data).preprocessing
                try original.setPreprocessing(preprocess)
                let config = original.config
                // Before the data: a latency table for another shape or device is refused first.
                let budget = try options.budget(for: config, on: backend)
                if let problem = method.problem(with: budget, epochs: options.epochs) {
                    throw PruneError.invalidBudget(problem)
                }
                var dataOptions = preprocess.datasetOptions(for: config)
                dataOptions.classes = dataClasses
                dataOptions.seed = common.seed
                var splits = try Dataset.load(options.data, options: dataLoading.applied(to: dataOptions))
                defer { if let summary = splits.skippedSummary { print(summary) } }
                // More data classes than outputs: the plain count first, then the names.
                try checkClassesFit(data: options.data, dataset: splits.training, subset: dataClasses,
                                    model: options.model, config: config)
                let fit = try ClassFit(splits.training, data: options.data, model: options.model, config: config)
                splits = try fit.apply(splits)
                fit.announce()
                let isIDX = try PreprocessOptions.isIDX(options.data)
                let progress = ProgressPrinter()
                func phase(_ name: String, epochs: Int, learningRate: Double, checkpoint: String) -> TrainingPhase {
                    var phase = TrainingPhase(
                        name: name, epochs: epochs, batchSize: training.batchSize, learningRate: learningRate,
                        distill: options.distill, alpha: training.alpha, temperature: training.temperature,
                        seed: common.seed, checkpointPath: checkpoint, checkpointEvery: training.checkpointEvery,
                        resume: options.resume || fellBack, protectedInputs: [options.model])
                    phase.progressLoss = progress.lossCadence
                    if !isIDX { phase.augmentation = .imageFolderDefault }
                    return phase
                }
                var pipeline = PruningPipeline(
                    method: method, budget: budget, scope: options.scope,
                    calibrationImages: group.calibrationImages(for: options.method, requested: options.calibImages,
                                                               batchSize: training.batchSize),
                    batchSize: training.batchSize,
                    methodTraining: phase(options.method, epochs: options.epochs, learningRate: options.lr,
                                          checkpoint: options.methodCheckpointPath),
                    fineTuning: options.finetuneEpochs == 0 ? nil
                        : phase("finetune", epochs: options.finetuneEpochs, learningRate: options.finetuneLr,
                                checkpoint: checkpointPath(for: options.out)),
                    latencyBatches: try parseBatchList(options.latencyBatches) ?? [1, 64], seed: common.seed)
                pipeline.compensation = options.compensation(methodDefault: group.compensatesByDefault)
                // Settings only some methods read (`SharedSetting`); each reads them from its context.
                pipeline.validationFraction = options.valFraction
                pipeline.compensationRidge = options.compensateRidge
                // The subset in the order given, as model classes (for a method that derives a subset model).
                pipeline.classes = fit.apply(dataClasses)
                installInterruptHandling()
                let outcome: PruningPipeline.Outcome
                do {
                    outcome = try pipeline.run(
                        original: original, originalPath: options.model, prunedPath: options.out, data: splits,
                        backend: backend, command: CommandLine.arguments.joined(separator: " "),
                        version: VitForge.version, hooks: .init(progress: { progress.report($0) }))
                } catch let interrupted as PassInterrupted {
                    progress.finish()
                    print(interruptionLine("\(interrupted)", checkpoints: pipeline.checkpointPaths))
                    throw ExitCode(130)
                }
                progress.finish()
                guard !outcome.stopped, var report = outcome.report else {
                    print(interruptionLine("interrupted", checkpoints: pipeline.checkpointPaths))
                    throw ExitCode(130)
                }
                let writesFiles = Collectives.world.isMain  // rank 0 of a data-parallel run
                if writesFiles { try outcome.weights.save(to: options.out) }
                report.seconds["total"] = Date().timeIntervalSince(started)
                report.budgetAsked = askedBudget
                report.data = options.data
                report.classes = dataClasses
                if let path = options.report, writesFiles {
                    try AtomicFile.write(report.jsonData(), to: path, protecting: [options.model])
                }
                if let path = options.html, writesFiles {
                    try AtomicFile.write(Data(HTMLReport.page(report).utf8), to: path, protecting: [options.model])
                }
                // Last, so that a kill before this point leaves a checkpoint for --resume.
                if writesFiles {
                    for path in pipeline.checkpointPaths { try? FileManager.default.removeItem(atPath: path) }
                }
                printComparison(report)
                print("wrote \(options.out)" + [options.report, options.html].compactMap { $0.map { " and \($0)" } }.joined())
            }
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
    func percent(_ value: Double?) -> String { Formatting.percent(value) }
    func millions(_ value: Int) -> String { Formatting.decimal1(Double(value) / 1e6) + "M" }
    let rows: [(String, String, String)] = [
        ("accuracy", percent(report.original.accuracy), percent(report.pruned.accuracy)),
        ("params", millions(report.original.params), millions(report.pruned.params)
            + " (\(percent(report.paramsFraction)))"),
        ("MACs/image", millions(report.original.macs), millions(report.pruned.macs)
            + " (\(percent(report.macsFraction)))"),
        ("MLP widths", report.original.perBlock.map { String($0.mlpHidden) }.joined(separator: ","),
         report.pruned.perBlock.map { String($0.mlpHidden) }.joined(separator: ",")),
    ] + zip(report.original.latency, report.pruned.latency).map { before, after in
        ("images/s @\(before.batch)", Formatting.decimal1(before.imagesPerSecond),
         Formatting.decimal1(after.imagesPerSecond)
            + " (×\(Formatting.decimal1(after.imagesPerSecond / before.imagesPerSecond)))")
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
