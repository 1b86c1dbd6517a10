import ArgumentParser
import Foundation
import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

/// The most likely classes of single image files, by name.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Print the most likely classes of image files (PNG, JPEG) with their probabilities.",
        discussion: """
            Each file is prepared as the model stores (see --preprocess): timm's evaluation transform (shorter \
            side to side/crop, centre crop), then x/255 and (x − mean)/std. Probabilities are the \
            softmax of the logits. A model without class names prints class indices. --json writes \
            {"predictions": [{"file": F, "top": [{"class": NAME, "index": I, "probability": P}, ...]}, ...]} \
            atomically, never over an input.
            """)

    @Option(help: "The model (safetensors: timm names, or a Hugging Face checkpoint with config.json beside it).")
    var model: String

    @Argument(help: "Image files (PNG or JPEG).")
    var files: [String]

    @Option(help: "Classes to list per file, most likely first.")
    var top = 5

    @Option(help: "Also write the predictions as JSON here.")
    var json: String?

    @OptionGroup var preprocessing: PreprocessOptions
    @OptionGroup var heads: HeadsOption
    @OptionGroup var batch: BatchSizeOption
    @OptionGroup var common: CommonOptions

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one image file") }
        if top < 1 { throw ValidationError("--top must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            try CommandFiles(inputs: [.init("--model", model)] + files.map { .init("image", $0) },
                             outputs: [.init("--json", json)]).check()
            let weights = try ViTWeights.load(path: model, heads: heads.heads)
            let config = weights.config
            let store = try ImageFolder.files(files, log: ImageFolderLog(policy: .fail) { DeviceSelection.printWarning($0) })
            let preparation = try preprocessing.resolve(for: config, modelPath: model, data: nil).preprocessing
                .preparation(for: config)
            let images = try Dataset(store: store, preparation: preparation, name: files[0])
            let vit = try VisionTransformer(weights: weights, backend: common.makeBackend())
            let k = min(top, config.classes)
            var predictions: [[String: Any]] = []
            try vit.logits(count: images.count, batchSize: batch.batchSize, prepare: { range, staging in
                try images.prepare(range, into: staging)
            }, consume: { range, logits in
                for (row, position) in range.enumerated() {
                    let probabilities = softmax(logits[(row * config.classes) ..< ((row + 1) * config.classes)])
                    // Most likely first; equal probabilities in output order, as torch.topk's stable sort gives.
                    let ranked = probabilities.indices.sorted {
                        probabilities[$0] != probabilities[$1] ? probabilities[$0] > probabilities[$1] : $0 < $1
                    }.prefix(k)
                    let top: [[String: Any]] = ranked.map { output in
                        let index = config.classId(ofOutput: output)
                        return ["class": config.classNames?[output] ?? String(index), "index": index,
                                "probability": probabilities[output]]
                    }
                    let file = files[position]
                    print(file + ": " + top.map { entry in
                        "\(entry["class"] ?? "") \(Formatting.percent(entry["probability"] as? Double ?? 0))"
                    }.joined(separator: ", "))
                    predictions.append(["file": file, "top": top])
                }
            })
            if let json {
                let text = try JSONSerialization.data(withJSONObject: ["predictions": predictions],
                                                      options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(text, to: json, protecting: [model] + files)
            }
        }
    }
}

/// exp(x − max) / Σ exp(x − max), in float64.
private func softmax(_ logits: some Collection<Float>) -> [Double] {
    let largest = Double(logits.max() ?? 0)
    let exponentials = logits.map { Foundation.exp(Double($0) - largest) }
    let total = exponentials.reduce(0, +)
    return exponentials.map { $0 / total }
}
