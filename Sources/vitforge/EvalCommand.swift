import ArgumentParser
import Foundation
import ViTForgeData
import ViTForgeModel
import ViTForgeTrain

extension DataSplit: ExpressibleByArgument {}

/// Accuracy and per-class accuracy of a model on an IDX data set's split.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure a model's accuracy and per-class accuracy on a data set split.",
        discussion: """
            Images are prepared as the model stores (see --preprocess): timm's evaluation transform, then x/255 \
            and (x − mean)/std. A model with several input channels gets the grey channel repeated. With --classes only the images of those \
            classes are evaluated; predictions are still the argmax over all of the model's classes.
            """)

    @Option(help: "The model (safetensors, timm key names).")
    var model: String

    @Option(help: "fashion-mnist (the Debian package's files) or a folder of IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]).")
    var data = IDXDataset.fashionMNISTName

    @Option(help: "Which split to evaluate: test or train.")
    var split = DataSplit.test

    @Option(help: ArgumentHelp("Evaluate only the images of these classes, comma-separated indices or names "
                               + "(e.g. 5,7,9 or sandal,sneaker,'ankle boot'); the JSON adds accuracy_restricted.",
                               valueName: "list"))
    var classes: String?

    @Option(help: "Write the results as JSON here (atomically): accuracy, per_class, images, model, device, seconds.")
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
            let images = try IDXDataset.load(data, split: split)
            // A trimmed head (classIds) names the data set's classes it predicts; otherwise output k is class k.
            if config.classIds == nil && images.classCount > config.classes {
                throw DataFileError(file: data, .invalidRequest(
                    "labels go up to \(images.classCount - 1), but the model \(model) has \(config.classes) classes"))
            }
            let subset = try classSubset
            for label in subset ?? [] where !images.labels.contains(where: { Int($0) == label }) {
                throw DataFileError(file: data, .invalidRequest("--classes: the \(split) split has no images of class \(label)"))
            }
            let indices = images.indices(ofClasses: subset.map(Set.init))
            let preparation = try preprocessing.resolve(for: config, modelPath: model, data: data).preprocessing
                .preparation(for: config)
            let backend = try common.makeBackend()
            let vit = try VisionTransformer(weights: weights, backend: backend)

            let outputClasses = (0 ..< config.classes).map(config.classId(ofOutput:))
            var tally = ClassificationTally(classes: max(config.classes, images.classCount,
                                                         (outputClasses.max() ?? 0) + 1))
            var restricted = subset.map { SubsetAccuracy(outputClasses: outputClasses, subset: $0) }
            installInterruptHandling()
            let pass = PassMonitor.begin("evaluation", total: indices.count)
            try vit.logits(count: indices.count, batchSize: batch.batchSize, prepare: { range, staging in
                preparation.prepare(images, indices: indices[range], into: staging)
            }, consume: { range, logits in
                let labels = indices[range].map { Int(images.labels[$0]) }
                for (row, label) in labels.enumerated() {
                    var best = 0
                    for k in 0 ..< config.classes where logits[row * config.classes + k] > logits[row * config.classes + best] {
                        best = k
                    }
                    tally.record(label: label, prediction: outputClasses[best])
                }
                restricted?.record(labels: labels, logits: logits)
                try pass.advance(range.count)
            })
            pass.end()
            let seconds = (ContinuousClock.now - started).seconds

            print("class  name          images  accuracy")
            var perClass: [String: Double] = [:]
            for label in 0..<tally.classes {
                guard let accuracy = tally.accuracy(ofClass: label) else { continue }
                perClass[String(label)] = accuracy
                print([String(label).padding(6), images.className(label).padding(13),
                       String(tally.seen[label]).padding(7), Formatting.percent(accuracy)].joined(separator: " "))
            }
            print("all    \("".padding(13)) \(String(tally.images).padding(7)) \(Formatting.percent(tally.accuracy))")
            print("\(model) on \(data) \(split.rawValue) split, \(backend.name): "
                + "\(tally.correctImages)/\(tally.images) correct in \(Formatting.decimal1(seconds)) s")

            if let restricted {
                print("restricted to classes \(subset ?? []): \(Formatting.percent(restricted.restrictedAccuracy)) "
                      + "(argmax over those classes' outputs only)")
            }
            if let json {
                var report: [String: Any] = [
                    "accuracy": tally.accuracy, "per_class": perClass, "images": tally.images,
                    "correct": tally.correctImages, "model": model, "data": data, "split": split.rawValue,
                    "classes": subset ?? Array(0..<tally.classes), "device": backend.name, "seconds": seconds,
                    "command": CommandLine.arguments.joined(separator: " "),
                ]
                if let restricted { report["accuracy_restricted"] = restricted.restrictedAccuracy }
                let text = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(text, to: json, protecting: [model])
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
