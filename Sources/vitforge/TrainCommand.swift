import ArgumentParser
import Foundation
import ViTForgeData
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// Fine-tunes a checkpoint or trains a ViT from scratch, with checkpoints that resume bit-exactly.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a ViT (from scratch, or fine-tune a checkpoint), optionally distilling from a teacher.",
        discussion: """
            Defaults are the Fashion-MNIST recipe of the fixtures: AdamW lr 1e-3, weight decay 0.05, batch 128, \
            5% linear warm-up then cosine to 0, ±2 px translation + horizontal flip, 7 epochs. Image folders \
            train with timm's RandomResizedCrop (--crop-scale) + horizontal flip instead of the translation.
            The model written stores its preprocessing (--preprocess, or what --init's model stores).
            A checkpoint (model + optimizer moments + step + RNG and data position) is written to \
            OUT.checkpoint.safetensors every --checkpoint-every steps, at each epoch's end and on Ctrl-C; \
            --resume continues from it and ends bit-identical to an uninterrupted run.
            """)

    @Option(help: "Training data: fashion-mnist, a folder of IDX files, or an ImageFolder (one folder per class, or train/val/test of those).")
    var data = IDXDataset.fashionMNISTName

    @Option(name: .customLong("init"), help: ArgumentHelp(
        "Start from this model (safetensors, timm key names): fine-tuning.",
        discussion: "Its head stays when the data's classes are among the model's class names (or the model has "
            + "no names and as many outputs as the data has classes); otherwise a new head for the data's classes "
            + "replaces it, said in one line."))
    var initModel: String?

    @Option(help: "Start from random weights with this config (JSON as stored in vitforge.config).")
    var config: String?

    @Option(help: ArgumentHelp("Start from random weights of a named shape: \(Architectures.names.joined(separator: ", ")) "
                               + "(built for the data's classes, with 3 input channels for an ImageFolder, at the "
                               + "shape's own input size).", valueName: "name"))
    var arch: String?

    @Option(help: "Epochs to train.")
    var epochs = 7

    @Option(help: "Where to write the trained model (the last epoch's weights).")
    var out: String

    @Option(help: "Teacher model for knowledge distillation (loss = (1−α)·CE + α·T²·KL).")
    var teacher: String?

    @Option(help: ArgumentHelp("Train only on these classes, comma-separated (e.g. 5,7,9).", valueName: "list"))
    var classes: String?

    @Flag(help: "With --classes: renumber the kept classes 0..<k (the model then needs k outputs).")
    var remapLabels = false

    @Option(help: "Share of each training class held out for validation, which picks the best checkpoint (never the test set); stored in the model, so that eval --split auto scores the same images.")
    var valFraction = 0.0

    @Option(help: "Peak learning rate.")
    var lr = 1e-3

    @Option(help: "Final learning rate of the cosine.")
    var minLr = 0.0

    @Option(help: "Share of the steps spent in linear warm-up.")
    var warmup = 0.05

    @Option(help: "Decoupled weight decay (not on biases, norms, position/class tokens).")
    var weightDecay = 0.05

    @Option(help: "Label smoothing of the cross-entropy.")
    var labelSmoothing = 0.0

    @Option(help: "Clip the global gradient L2 norm to this value.")
    var clipGrad: Double?

    @Option(help: "IDX data only: random translation of ±N pixels (0 turns it off).")
    var translate = 2

    @Option(help: "Probability of a horizontal flip (IDX data and image folders).")
    var flip = 0.5

    @Option(help: ArgumentHelp("Image folders only: RandomResizedCrop's area share range (timm's default 0.08,1; "
                               + "1,1 crops the whole image, narrowed to the 3/4–4/3 ratio range).",
                               valueName: "min,max"))
    var cropScale = "0.08,1"

    @Option(help: ArgumentHelp("With --init: train at this input side, the position embedding resampled as timm "
                               + "does (bicubic, antialiased; class/distillation tokens kept).", valueName: "N"))
    var inputSize: Int?

    @Flag(help: "Continue from OUT.checkpoint.safetensors.")
    var resume = false

    @Option(help: "Write the training history (per epoch: loss, lr, accuracy, seconds) as JSON here.")
    var log: String?

    @Option(help: "Stop after this many steps, leaving a checkpoint to resume from (for tests and time-boxed runs).")
    var stopAfterSteps: Int?

    @OptionGroup var training: TrainingFlags
    @OptionGroup var heads: HeadsOption
    @OptionGroup var dataLoading: DataLoadingOptions
    @OptionGroup var preprocessing: PreprocessOptions
    @OptionGroup var common: CommonOptions

    // Not `vitforge.checkpointPath`: the fuzz package compiles these sources as a module of another name.
    var checkpointPath: String { trainCheckpointPath(for: out) }

    func validate() throws {
        let sources = [initModel, config, arch].compactMap { $0 }
        if sources.count > 1 { throw ValidationError("give one of --init, --config, --arch") }
        if let arch { _ = try architecture(arch) }
        if epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        _ = try parseClassList(classes)
        _ = try randomCrop()
        if inputSize != nil && initModel == nil { throw ValidationError("--input-size needs --init (a model to resample)") }
    }

    /// `--crop-scale` as timm's RandomResizedCrop.
    private func randomCrop() throws -> RandomResizedCrop {
        let parts = cropScale.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, parts[0] <= parts[1] else {
            throw ValidationError("--crop-scale \"\(cropScale)\" is not MIN,MAX (e.g. 0.08,1)")
        }
        let crop = RandomResizedCrop(scale: parts[0] ... parts[1])
        if let problem = crop.problem { throw ValidationError("--crop-scale: \(problem)") }
        return crop
    }

    func run() throws {
        try reportingErrors {
            try CommandFiles(
                inputs: [.init("--init", initModel), .init("--teacher", teacher), .init("--config", config),
                         .init("--data", data)],
                outputs: [.init("--out", out), .init("--log", log), .init("checkpoint", checkpointPath),
                          .init("best checkpoint", out + ".best.safetensors")]).check()
            try common.onDevice { backend, fellBack in
                let classList = try parseClassList(classes, data: data)
                var weights = try startingWeights()
                // --classes keeps today's rule (the model's head, labels as given or renumbered).
                if initModel != nil && classList == nil { weights = try fitHead(weights) }
                let (preprocess, source) = try preprocessing.resolve(for: weights.config, modelPath: initModel, data: data)
                try weights.setPreprocessing(preprocess)
                print("preprocessing: \(preprocess.summary) (\(source))")
                let config = weights.config
                var options = preprocess.datasetOptions(for: config)
                options.classes = classList
                options.remapLabels = remapLabels
                options.validationFraction = valFraction
                options.seed = common.seed
                var splits = try Dataset.load(data, options: dataLoading.applied(to: options))
                defer { if let summary = splits.skippedSummary { print(summary) } }
                if classList == nil {
                    let fit = try ClassFit(splits.training, data: data, model: initModel ?? "being trained", config: config)
                    splits = try fit.apply(splits)
                    fit.announce()
                } else if splits.training.classCount > config.classes {
                    throw ValidationError("\(data) has \(splits.training.classCount) classes; the model has \(config.classes) outputs")
                }
                let dataHasNames = try DataSource.classNames(data) != nil
                let trainingSplit = splits.training
                try weights.describe { stored in
                    // What the model now knows about its classes and inputs, written with it.
                    if stored.classNames == nil, dataHasNames, trainingSplit.classNames.count == stored.classes {
                        stored.classNames = trainingSplit.classNames
                    }
                    if valFraction > 0 { stored.heldOut = HeldOutSplit(fraction: valFraction, seed: common.seed) }
                }
                let model = try VisionTransformer(weights: weights, backend: backend)
                let teacherModel = try teacher.map {
                    try VisionTransformer(weights: ViTWeights.load(path: $0, heads: nil), backend: backend)
                }
                let settings = TrainingSettings(
                    epochs: epochs, learningRate: lr, minimumLearningRate: minLr, warmupFraction: warmup,
                    optimizer: AdamWSettings(weightDecay: weightDecay), labelSmoothing: labelSmoothing,
                    gradientClipNorm: clipGrad, distillation: teacher == nil ? nil
                        : DistillationSettings(alpha: training.alpha, temperature: training.temperature))
                let protected = [initModel, teacher, self.config].compactMap { $0 }
                let progress = ProgressPrinter()
                var session = TrainingSession(
                    settings: settings, batchSize: training.batchSize, seed: common.seed,
                    augmentation: try PreprocessOptions.isIDX(data)
                        ? AugmentationRecipe(maximumShift: translate, flipProbability: flip)
                        : AugmentationRecipe(maximumShift: 0, flipProbability: flip, randomCrop: try randomCrop()),
                    checkpoints: CheckpointPolicy(lastPath: checkpointPath,
                                                  bestPath: splits.validation == nil ? nil : out + ".best.safetensors",
                                                  everySteps: training.checkpointEvery, protectedInputs: protected),
                    resume: resume ? .always : fellBack ? .ifCheckpointExists : .never)
                // A head trained on renumbered labels records which data-set class each output is (eval maps back).
                let remapped = remapLabels ? classList.flatMap { $0.count == config.classes ? $0 : nil } : nil
                session.output = .init(path: out) { trained in
                    if let ids = remapped, trained.config.classIds == nil { try trained.setClassIds(ids) }
                }
                session.loaderWorkers = dataLoading.loaderThreads
                session.progressLoss = progress.lossCadence
                session.evaluation = .init(validation: splits.validation, test: splits.test,
                                           batchSize: max(training.batchSize, 256)) { epoch, validation, test in
                    progress.finish()
                    var line = "epoch \(epoch)/\(epochs):"
                    if let validation { line += " validation \(Formatting.percent(validation))" }
                    if let test { line += " test \(Formatting.percent(test))" }
                    print(line)
                }
                let trainer = try session.makeTrainer(model: model, teacher: teacherModel, training: splits.training)
                installInterruptHandling()
                let stopAfter = stopAfterSteps
                let outcome = try session.run(trainer, progress: { progress.report($0) },
                                              stopWhen: { report in stopAfter.map { report.step >= $0 } ?? false },
                                              resumed: { trainer in
                                                  print("resumed at step \(trainer.state.step) from \(checkpointPath)")
                                              })
                progress.finish()
                let exchange = trainer.gradientExchange
                if trainer.collective.size > 1 && exchange.calls > 0 {
                    print("gradient all-reduce over \(trainer.collective.size) ranks: "
                          + "\(Formatting.decimal1(exchange.seconds / Double(exchange.calls) * 1e3)) ms per step")
                }
                let writesFiles = Collectives.world.isMain  // rank 0 of a data-parallel run
                if let log, writesFiles {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try AtomicFile.write(try encoder.encode(outcome.history), to: log, protecting: protected)
                }
                if outcome.stopped {
                    print("stopped at step \(trainer.state.step); resume with --resume (checkpoint \(checkpointPath))")
                    throw ExitCode(130)
                }
                _ = try session.result(of: trainer)
                print("wrote \(out)")
            }
        }
    }

    private func startingWeights() throws -> ViTWeights {
        if let initModel {
            let loaded = try ViTWeights.load(path: initModel, heads: heads.heads)
            guard let inputSize, inputSize != loaded.config.imageSize else { return loaded }
            print("input size \(inputSize): position embedding resampled from \(loaded.config.gridSize)² to "
                  + "\((inputSize / max(loaded.config.patchSize, 1)))² patches")
            return try loaded.resampled(toInputSize: inputSize)
        }
        var config: ViTConfig
        if let path = self.config {
            config = try ViTConfig.fromJSON(String(contentsOfFile: path, encoding: .utf8), file: path)
        } else {
            let name = arch ?? "fm-vit-c"
            config = Architectures.named(name) ?? Architectures.all[0].config
            config = try shaped(config, named: name)
        }
        return try ViTWeights.initialized(config: config, seed: common.seed)
    }

    /// A named architecture built for the data: one output per class (named), three input channels for an
    /// ImageFolder (grey photos are repeated, as Pillow's convert("RGB") does), the architecture's own side.
    private func shaped(_ architecture: ViTConfig, named name: String) throws -> ViTConfig {
        var config = architecture
        guard let names = try DataSource.classNames(data) else { return config }
        config.classes = names.count
        config.classNames = names
        switch try DataSource.resolve(data) {
        case .imageFolder, .imageFolderSplits: config.inChannels = 3
        case .fashionMNIST, .idxFolder: break
        }
        print("\(name) for \(data): \(config.inChannels)×\(config.imageSize)×\(config.imageSize) input, "
              + "\(names.count) classes (\(ClassFit.list(names)))")
        return config
    }

    /// `--init` on a data set with class names: the model's head stays when the data's classes are among its
    /// names (or, for a model without names, when the counts agree: output k is the data's class k); otherwise a
    /// new head for the data's classes replaces it, said in one line.
    private func fitHead(_ weights: ViTWeights) throws -> ViTWeights {
        guard let names = try DataSource.classNames(data) else { return weights }
        let config = weights.config
        switch config.correspondence(ofDataClasses: names) {
        case .known:
            return weights
        case .unnamed where names.count == config.classes && config.classIds == nil:
            var named = weights
            try named.describe { $0.classNames = names }
            return named
        case .unnamed, .unknown:
            print("new \(names.count)-way head for \(ClassFit.list(names)); the \(config.classes)-way head is dropped")
            return try weights.replacingHead(classNames: names, seed: common.seed)
        }
    }
}

/// The global `checkpointPath(for:)`, which `TrainCommand.checkpointPath` hides inside the command.
private func trainCheckpointPath(for out: String) -> String { checkpointPath(for: out) }

/// `5,7,9` → [5, 7, 9]; nil when not given. A part that is not a number is a class name of the data set `data`
/// (case-insensitive: `--classes T-shirt/top,pullover,shirt`); without `data` (flag validation, before the data is
/// known) names pass unchecked.
func parseClassList(_ text: String?, data: String? = nil) throws -> [Int]? {
    guard let text else { return nil }
    var names: [String]?
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        .map { $0.trimmingCharacters(in: .whitespaces) }
    var values: [Int] = []
    for (position, part) in parts.enumerated() {
        if let value = Int(part) {
            guard value >= 0 else { throw ValidationError("--classes: \"\(part)\" is not a class index (expected e.g. 5,7,9)") }
            values.append(value)
            continue
        }
        guard !part.isEmpty else { throw ValidationError("--classes: an empty entry (expected e.g. 5,7,9 or names)") }
        guard let data else { values.append(-1 - position); continue }
        if names == nil { names = try DataSource.classNames(data) ?? [] }
        guard let index = names?.firstIndex(where: { $0.lowercased() == part.lowercased() }) else {
            throw ValidationError("--classes: \(data) has no class named \"\(part)\" (classes: "
                                  + "\((names ?? []).isEmpty ? "numbers only" : (names ?? []).joined(separator: ", ")))")
        }
        values.append(index)
    }
    guard Set(values).count == values.count else { throw ValidationError("--classes lists a class twice") }
    return values
}
