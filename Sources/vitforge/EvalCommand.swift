import ArgumentParser
import Foundation
import ViTForgeData
import ViTForgeModel
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeTrain

/// Which part of the data `eval` scores.
enum EvalSplit: String, ExpressibleByArgument, CaseIterable {
    case auto, train, val, test
}

/// Accuracy and per-class accuracy of a model on a data set split.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure a model's accuracy and per-class accuracy on a data set split.",
        discussion: """
            Images are prepared as the model stores (see --preprocess): timm's evaluation transform (shorter \
            side to side/crop, centre crop), then x/255 and (x − mean)/std. A model with several input channels \
            gets the grey channel repeated. A folder's classes are matched to the model's class names; a folder \
            with fewer classes is scored as that subset (predictions still over all of the model's classes), a \
            class the model does not know is an error. With --classes only the images of those classes are \
            evaluated; predictions are still the argmax over all of the model's classes.
            """)

    @Option(help: "The model (safetensors, timm key names).")
    var model: String

    @Option(help: "fashion-mnist (the Debian package's files), a folder of IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]), or an ImageFolder (one folder per class, or train/val/test of those).")
    var data = IDXDataset.fashionMNISTName

    @Option(help: ArgumentHelp(
        "Which split to evaluate: auto, train, val or test.",
        discussion: "auto: an ImageFolder's val, else its test, else the part of the folder the model held out "
            + "in training (train --val-fraction, stored in the model); IDX data's test split. A folder without "
            + "any of these is evaluated whole, with a warning that it may hold the training images."))
    var split = EvalSplit.auto

    @Option(help: ArgumentHelp("Evaluate only the images of these classes, comma-separated indices or names "
                               + "(e.g. 5,7,9 or sandal,sneaker,'ankle boot'); the JSON adds accuracy_restricted.",
                               valueName: "list"))
    var classes: String?

    @Option(help: "Write the results as JSON here (atomically): accuracy, per_class, images, classes (indices), class_names, confusion (confusion[i][j]: images of classes[i] predicted as class j), model, device, seconds.")
    var json: String?

    @OptionGroup var preprocessing: PreprocessOptions

    @OptionGroup var heads: HeadsOption
    @OptionGroup var batch: BatchSizeOption
    @OptionGroup var common: CommonOptions

    /// `--classes` parsed (indices or the data set's class names); nil when not given.
    private var classSubset: [Int]? {
        get throws { try parseClassList(classes, data: data) }
    }

    func validate() throws {
        _ = try classSubset
    }

    func run() throws {
        try reportingErrors {
            try CommandFiles(inputs: [.init("--model", model), .init("--data", data)],
                             outputs: [.init("--json", json)]).check()
            let started = ContinuousClock.now
            let weights = try ViTWeights.load(path: model, heads: heads.heads)
            let config = weights.config
            let subsetGiven = try classSubset
            let (loaded, splitName, warning) = try evaluationImages(config, classes: subsetGiven)
            let fit = try ClassFit(loaded, data: data, model: model, config: config)
            let images = try fit.apply(loaded)
            let subset = fit.apply(subsetGiven)
            if let warning { DeviceSelection.printWarning(warning) }
            fit.announce()
            let backend = try common.makeBackend()
            let vit = try VisionTransformer(weights: weights, backend: backend)

            let outputClasses = (0 ..< config.classes).map(config.classId(ofOutput:))
            let classCount = max(config.classIdCount, images.classCount)
            var tally = ClassificationTally(classes: classCount)
            var confusion = [[Int]](repeating: [Int](repeating: 0, count: classCount), count: classCount)
            var restricted = subset.map { SubsetAccuracy(outputClasses: outputClasses, subset: $0) }
            installInterruptHandling()
            let pass = PassMonitor.begin("evaluation", total: images.count)
            try vit.logits(count: images.count, batchSize: batch.batchSize, prepare: { range, staging in
                try images.prepare(range, into: staging)
            }, consume: { range, logits in
                let labels = range.map { images.label($0) }
                for (row, label) in labels.enumerated() {
                    var best = 0
                    for k in 0 ..< config.classes where logits[row * config.classes + k] > logits[row * config.classes + best] {
                        best = k
                    }
                    tally.record(label: label, prediction: outputClasses[best])
                    confusion[label][outputClasses[best]] += 1
                }
                restricted?.record(labels: labels, logits: logits)
                try pass.advance(range.count)
            })
            pass.end()
            let seconds = (ContinuousClock.now - started).seconds

            func className(_ label: Int) -> String {
                images.classNames.indices.contains(label) ? images.classNames[label] : String(label)
            }
            print("class  name          images  accuracy")
            var perClass: [String: Double] = [:]
            for label in 0..<tally.classes {
                guard let accuracy = tally.accuracy(ofClass: label) else { continue }
                perClass[String(label)] = accuracy
                print([String(label).padding(6), className(label).padding(13),
                       String(tally.seen[label]).padding(7), Formatting.percent(accuracy)].joined(separator: " "))
            }
            print("all    \("".padding(13)) \(String(tally.images).padding(7)) \(Formatting.percent(tally.accuracy))")
            print("\(model) on \(splitName), \(backend.name): "
                + "\(tally.correctImages)/\(tally.images) correct in \(Formatting.decimal1(seconds)) s")

            if let restricted {
                print("restricted to classes \(subset ?? []): \(Formatting.percent(restricted.restrictedAccuracy)) "
                      + "(argmax over those classes' outputs only)")
            }
            if let json {
                let evaluated = subset ?? Array(0..<tally.classes)
                var report: [String: Any] = [
                    "accuracy": tally.accuracy, "per_class": perClass, "images": tally.images,
                    "correct": tally.correctImages, "model": model, "data": data, "split": splitName,
                    "classes": evaluated, "class_names": evaluated.map(className),
                    "confusion": evaluated.map { confusion[$0] }, "device": backend.name, "seconds": seconds,
                    "command": CommandLine.arguments.joined(separator: " "),
                ]
                if let restricted { report["accuracy_restricted"] = restricted.restrictedAccuracy }
                let text = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(text, to: json, protecting: [model])
            }
        }
    }

    /// The images `--split` picks, prepared for the model, a description of them for the summary line, and a
    /// warning when they may be the training images.
    private func evaluationImages(_ config: ViTConfig, classes: [Int]?) throws -> (Dataset, String, String?) {
        var options = try preprocessing.resolve(for: config, modelPath: model, data: data).preprocessing
            .datasetOptions(for: config)
        options.classes = classes
        options.seed = common.seed
        let source = try DataSource.resolve(data)
        switch source {
        case .fashionMNIST, .idxFolder:
            // IDX data has train and test splits only, and each loads alone.
            guard split != .val else {
                throw DataFileError(file: data, .invalidRequest("--split val: IDX data has train and test splits only"))
            }
            let idxSplit = split == .train ? DataSplit.train : .test
            let images = try IDXDataset.load(data, split: idxSplit)
            options.means = options.means ?? [ImagePreparation.fashionMNISTMean]
            options.stds = options.stds ?? [ImagePreparation.fashionMNISTStd]
            let preparation = try Dataset.makePreparation(options, isImageFolder: false, origin: data)
            var dataset = try Dataset(store: ImageStore(images, origin: data), preparation: preparation,
                                      name: "\(data) \(idxSplit.rawValue)")
            if let classes { dataset = try dataset.subset(classes: classes, remap: false) }
            return (dataset, "\(data) \(idxSplit.rawValue) split", nil)
        case .imageFolderSplits, .imageFolder:
            let root: String
            if case let .imageFolderSplits(folder) = source { root = folder } else { root = data }
            func has(_ name: String) -> Bool {
                guard case .imageFolderSplits = source else { return false }
                var isFolder: ObjCBool = false
                return FileManager.default.fileExists(atPath: ImageFolder.join(root, name), isDirectory: &isFolder)
                    && isFolder.boolValue
            }
            var wanted = split
            if wanted == .auto { wanted = has("val") ? .val : has("test") ? .test : .auto }
            switch wanted {
            case .val, .test:
                let name = wanted.rawValue
                guard has(name) else {
                    throw DataFileError(file: ImageFolder.join(root, name), .invalidRequest("--split \(name): no such folder"))
                }
                let splits = try Dataset.load(data, options: options)
                guard let dataset = wanted == .val ? splits.validation : splits.test else {
                    throw DataFileError(file: ImageFolder.join(root, name), .invalidRequest("no images"))
                }
                return (dataset, dataset.name, nil)
            case .train:
                return (try Dataset.load(data, options: options).training, "\(data) training images", nil)
            case .auto:
                // No val or test folder: the part the model held out in training, else everything, said so.
                if let heldOut = config.heldOut {
                    options.validationFraction = heldOut.fraction
                    options.seed = heldOut.seed
                    if let validation = try Dataset.load(data, options: options).validation {
                        return (validation, "the \(Formatting.percent(heldOut.fraction)) of \(data) held out in training "
                                + "(seed \(heldOut.seed))", nil)
                    }
                }
                let training = try Dataset.load(data, options: options).training
                return (training, "all of \(data)", "\(data) has no val or test folder and \(model) stores no held-out "
                        + "split: evaluating all \(training.count) images, which may include its training images")
            }
        }
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }
}
