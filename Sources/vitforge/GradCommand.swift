import ArgumentParser
import ViTForgeFormats
import ViTForgeModel

/// The loss and the gradient of every parameter for one batch, written as safetensors.
struct GradCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grad",
        abstract: "Compute the mean cross-entropy of \"input\" against \"labels\" and the gradient of every parameter.",
        discussion: """
            Writes "loss" [1] and "grad.<param>" for every parameter (timm names), float32, atomically. The whole \
            input is one batch. For a distilled DeiT the loss is on the average of its two heads, as at inference. \
            Labels may be int64, int32 or whole numbers in a float dtype.
            """)

    @Option(help: "The model (safetensors, timm key names).")
    var model: String

    @Option(help: "Safetensors file holding \"input\" [N, channels, imageSize, imageSize] and \"labels\" [N].")
    var input: String

    @Option(help: "Safetensors file to write with \"loss\" and \"grad.<param>\".")
    var out: String

    @Option(help: "Label smoothing ε of the cross-entropy (0 = none).")
    var smoothing: Float = 0

    @OptionGroup var heads: HeadsOption
    @OptionGroup var common: CommonOptions

    func validate() throws {
        if !(smoothing >= 0 && smoothing < 1) { throw ValidationError("--smoothing must be in [0, 1)") }
    }

    func run() throws {
        try reportingErrors {
            try CommandFiles(inputs: [.init("--model", model), .init("--input", input)],
                             outputs: [.init("--out", out)]).check()
            let weights = try ViTWeights.load(path: model, heads: heads.heads)
            let config = weights.config
            let file = try SafetensorsFile(path: input)
            let (images, count) = try file.images("input", for: config)
            let labels = try file.classLabels("labels", count: count, classes: config.classes)
            let backend = try common.makeBackend()
            let vit = try VisionTransformer(weights: weights, backend: backend)
            try vit.zeroGradients()
            let loss = try vit.crossEntropy(images: backend.makeBuffer(images), labels: backend.makeBuffer(labels),
                                            batch: count, smoothing: smoothing, backward: true)
            var tensors = [NamedTensor(name: "loss", shape: [1], floats: [Float(loss)])]
            for spec in config.parameterSpecs() {
                guard let gradient = vit.gradients[spec.name] else {
                    throw ModelFileError(file: model, key: spec.name, .missingKey)
                }
                tensors.append(NamedTensor(name: "grad." + spec.name, shape: spec.shape,
                                           floats: try backend.read(gradient, count: spec.elementCount)))
            }
            try SafetensorsWriter.write(tensors, to: out, protecting: [model, input])
            print("\(out): loss \(loss), \(config.parameterSpecs().count) gradients on \(backend.name)")
        }
    }
}
