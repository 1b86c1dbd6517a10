import ArgumentParser
import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgePrune
import ViTForgeTrain

/// The embedded default, end to end: train a small ViT on Fashion-MNIST, prune it with VBP to half its MLP width,
/// fine-tune briefly with distillation, and compare.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Train a small ViT on Fashion-MNIST, prune half its MLP with VBP, distil briefly, and compare.",
        discussion: """
            Needs only the Debian package dataset-fashion-mnist. Writes OUT-DIR/model.safetensors (the trained \
            model), OUT-DIR/pruned.safetensors, OUT-DIR/report.json and OUT-DIR/report.html, and prints a table of \
            accuracy, params, MACs and images/s before and after. Training and fine-tuning checkpoint as they go; \
            after Ctrl-C, run the same command with --resume.
            """)

    @Option(help: "Start from this trained model instead of training one (must take 1×28×28 images, 10 classes).")
    var model: String?

    @OptionGroup var heads: HeadsOption

    @Option(help: "Shape of the model trained from scratch (see `vitforge train --help`).")
    var arch = "fm-vit-c"

    @Option(help: "Epochs of training from scratch (ignored with --model).")
    var epochs = 2

    @Option(help: "Fraction of MLP neurons VBP keeps.")
    var keepMlp = 0.5

    @Option(help: "Training images whose MLP activations VBP measures.")
    var calibImages = 10_000

    @Option(help: "Epochs of distillation fine-tuning after pruning.")
    var finetuneEpochs = 1

    // For the soak test's tiny configuration (a few hundred images of the same shape); not part of the demo.
    @Option(help: .hidden)
    var data = IDXDataset.fashionMNISTName

    @Option(help: "Folder for the models and reports.")
    var outDir = "vitforge-demo"

    @Flag(help: "Continue an interrupted demo from its checkpoints.")
    var resume = false

    @OptionGroup var common: CommonOptions

    /// The demo's outputs sit in --out-dir (made with its parents if missing); none may be --model.
    var demoFiles: CommandFiles {
        // With --model the demo trains nothing, so model.safetensors is not written (and may be that --model).
        let names = (model == nil ? ["model.safetensors"] : []) + ["pruned.safetensors", "report.json", "report.html"]
        let outputs = names.map {
            CommandFiles.Named("--out-dir", (outDir as NSString).appendingPathComponent($0))
        }
        let exists = FileManager.default.fileExists(atPath: outDir)
        return CommandFiles(inputs: [.init("--model", model), .init("--data", data)],
                            outputs: exists ? outputs : [])
    }

    func run() throws {
        try reportingErrors {
            try demoFiles.check()
            try common.onDevice { backend, fellBack in
                let resume = self.resume || fellBack
                let started = Date()
                try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
                let modelPath = (outDir as NSString).appendingPathComponent("model.safetensors")
                let prunedPath = (outDir as NSString).appendingPathComponent("pruned.safetensors")
                let reportPath = (outDir as NSString).appendingPathComponent("report.json")
                let htmlPath = (outDir as NSString).appendingPathComponent("report.html")

                let original: ViTWeights
                let sourcePath: String
                if let model {
                    original = try ViTWeights.load(path: model, heads: heads.heads)
                    sourcePath = model
                } else if resume == false || !FileManager.default.fileExists(atPath: modelPath)
                            || FileManager.default.fileExists(atPath: checkpointPath(for: modelPath)) {
                    let config = try architecture(arch)
                    original = try train(config: config, to: modelPath, backend: backend, resume: resume)
                    sourcePath = modelPath
                } else {
                    print("step 1/3: using the model trained earlier, \(modelPath)")
                    original = try ViTWeights.load(path: modelPath)
                    sourcePath = modelPath
                }

                print("step 2/3: VBP to \(Int(keepMlp * 100))% of the MLP neurons, then \(finetuneEpochs) epoch(s) of distillation")
                let config = original.config
                let splits = try Dataset.load(data, options: DatasetOptions(
                    channels: config.inChannels, side: config.imageSize, seed: common.seed))
                try checkClassesFit(data: data, dataset: splits.training, subset: nil, model: sourcePath, config: config)
                let progress = ProgressPrinter()
                let pipeline = PruningPipeline(
                    method: VarianceBasedPruning(), budget: Budget(keepMLP: keepMlp), calibrationImages: calibImages,
                    fineTuning: TrainingPhase(epochs: finetuneEpochs, distill: true, seed: common.seed,
                                           checkpointPath: checkpointPath(for: prunedPath),
                                           resume: resume && FileManager.default.fileExists(
                                               atPath: checkpointPath(for: prunedPath)),
                                           protectedInputs: [sourcePath]),
                    latencyBatches: [1, 64, 256], seed: common.seed)
                installInterruptHandling()
                let outcome: PruningPipeline.Outcome
                do {
                    outcome = try pipeline.run(
                        original: original, originalPath: sourcePath, prunedPath: prunedPath, data: splits,
                        backend: backend, command: CommandLine.arguments.joined(separator: " "),
                        version: VitForge.version,
                        hooks: .init(log: { print("  " + $0) }, progress: { progress.report($0) }))
                } catch let interrupted as PassInterrupted {
                    // Step 1's model (when trained) is kept; --resume starts from it.
                    progress.finish()
                    print("\(interrupted); continue with `vitforge demo --resume --out-dir \(outDir)`")
                    throw ExitCode(130)
                }
                progress.finish()
                guard !outcome.stopped, var report = outcome.report else {
                    print("interrupted; continue with `vitforge demo --resume --out-dir \(outDir)`")
                    throw ExitCode(130)
                }
                try outcome.weights.save(to: prunedPath)
                report.seconds["total"] = Date().timeIntervalSince(started)
                try AtomicFile.write(report.jsonData(), to: reportPath)
                try AtomicFile.write(Data(HTMLReport.page(report, title: "ViTForge demo: VBP on Fashion-MNIST").utf8),
                                     to: htmlPath)
                // Last, so that a kill before this point leaves a checkpoint for --resume.
                try? FileManager.default.removeItem(atPath: checkpointPath(for: prunedPath))
                print("step 3/3: compare")
                printComparison(report)
                print("wrote \(modelPath), \(prunedPath), \(reportPath), \(htmlPath) in "
                      + "\(Formatting.decimal1(report.seconds["total"] ?? 0)) s")
            }
        }
    }

    /// Step 1: the fixture recipe (AdamW 1e-3, wd 0.05, batch 128, warm-up + cosine, ±2 px + flip), shortened.
    private func train(config: ViTConfig, to path: String, backend: Backend, resume: Bool) throws -> ViTWeights {
        let checkpoint = checkpointPath(for: path)
        print("step 1/3: train \(arch) from scratch on Fashion-MNIST for \(epochs) epoch(s)")
        // The model written stores how its images were prepared (the data set's default, as `train` does).
        let preprocess = try PreprocessOptions.parse([]).resolve(for: config, modelPath: nil, data: data).preprocessing
        var options = preprocess.datasetOptions(for: config)
        options.seed = common.seed
        let splits = try Dataset.load(data, options: options)
        var initial = try ViTWeights.initialized(config: config, seed: common.seed)
        try initial.setPreprocessing(preprocess)
        let model = try VisionTransformer(weights: initial, backend: backend)
        let progress = ProgressPrinter()
        var session = TrainingSession(settings: TrainingSettings(epochs: epochs), batchSize: 128, seed: common.seed,
                                      augmentation: .fashionMNISTFixture,
                                      checkpoints: CheckpointPolicy(lastPath: checkpoint, everySteps: 200),
                                      resume: resume ? .ifCheckpointExists : .never)
        session.output = .init(path: path, removesCheckpoint: true)
        session.progressLoss = progress.lossCadence
        if let test = splits.test {
            session.evaluation = .init(validation: nil, test: test) { epoch, _, accuracy in
                progress.finish()
                print("  epoch \(epoch)/\(epochs): test accuracy \(Formatting.percent(accuracy))")
            }
        }
        let trainer = try session.makeTrainer(model: model, training: splits.training)
        installInterruptHandling()
        let outcome = try session.run(trainer, progress: { progress.report($0) })
        progress.finish()
        if outcome.stopped {
            print("interrupted; continue with `vitforge demo --resume --out-dir \(outDir)`")
            throw ExitCode(130)
        }
        return try session.result(of: trainer)
    }
}
