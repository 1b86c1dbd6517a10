import ArgumentParser
import ViTForgeFormats
import ViTForgeModel

/// Logits for a tensor of images, written as safetensors.
struct InferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Compute the logits of tensor \"input\" [N, C, H, W] and write them as \"logits\" [N, classes].",
        discussion: """
            The input may be any float dtype (F32, F16, BF16, F64) and must already be normalised as the model \
            expects. The output is float32 safetensors, written atomically, never over an input file. For a model \
            whose head serves a class subset (vulcan --trim-head, train --remap-labels), the metadata key \
            vitforge.class_ids lists the data set's class of each logit column.
            """)

    @Option(help: "The model (safetensors, timm key names).")
    var model: String

    @Option(help: "Safetensors file holding tensor \"input\" [N, channels, imageSize, imageSize].")
    var input: String

    @Option(help: "Safetensors file to write with tensor \"logits\" [N, classes].")
    var out: String

    @OptionGroup var heads: HeadsOption
    @OptionGroup var batch: BatchSizeOption
    @OptionGroup var common: CommonOptions

    func run() throws {
        try reportingErrors {
            try CommandFiles(inputs: [.init("--model", model), .init("--input", input)],
                             outputs: [.init("--out", out)]).check()
            let weights = try ViTWeights.load(path: model, heads: heads.heads)
            let config = weights.config
            let (images, count) = try SafetensorsFile(path: input).images("input", for: config)
            let vit = try VisionTransformer(weights: weights, backend: common.makeBackend())
            let perImage = config.inChannels * config.imageSize * config.imageSize
            var logits = [Float]()
            logits.reserveCapacity(count * config.classes)
            try vit.logits(count: count, batchSize: batch.batchSize, prepare: { range, staging in
                images.withUnsafeBufferPointer { source in
                    let slice = source[(range.lowerBound * perImage)..<(range.upperBound * perImage)]
                    _ = staging.update(fromContentsOf: UnsafeBufferPointer(rebasing: slice))
                }
            }, consume: { _, batchLogits in
                logits.append(contentsOf: batchLogits)
            })
            // A head serving a class subset says which data-set class each logit column is.
            let metadata = config.classIds.map { ["vitforge.class_ids": $0.map(String.init).joined(separator: ",")] } ?? [:]
            try SafetensorsWriter.write([NamedTensor(name: "logits", shape: [count, config.classes], floats: logits)],
                                        metadata: metadata, to: out, protecting: [model, input])
            print("\(out): logits [\(count), \(config.classes)] on \(vit.backend.name)")
        }
    }
}
