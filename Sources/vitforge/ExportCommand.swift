import ArgumentParser
import ViTForgeExport
import ViTForgeFormats
import ViTForgeModel

/// The formats `vitforge export` writes.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
    case onnx
}

/// Writes a model for other runtimes.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a model as an ONNX graph (opset 17, dynamic batch) for onnxruntime and other runtimes.",
        discussion: """
            Any model vitforge loads exports: pruned per-block widths, heads of different widths, q/k ≠ v, \
            blocks without heads, custom attention scales, distillation token, average pooling, Hugging Face \
            checkpoints. Input "input" [batch, C, H, W] (normalised as for `infer`), output "logits" \
            [batch, classes]; the configuration is kept in the model's metadata (vitforge.config), with what a \
            deployer needs as JSON: vitforge.class_names (each logit column's class) and vitforge.preprocessing \
            (input_size [C, H, W]; mean, std, interpolation, crop_pct when the model stores them). Written \
            atomically, never over the input.
            """)

    @Option(help: "The model (safetensors: timm names, or a Hugging Face checkpoint with config.json beside it).")
    var model: String

    @Option(help: "Output format: onnx.")
    var format = ExportFormat.onnx

    @Option(help: "Where to write the exported model.")
    var out: String

    @OptionGroup var heads: HeadsOption

    func run() throws {
        try reportingErrors {
            try CommandFiles(inputs: [.init("--model", model)], outputs: [.init("--out", out)]).check()
            let weights = try ViTWeights.load(path: model, heads: heads.heads)
            switch format {
            case .onnx:
                try ONNXExport.write(weights, to: out, producerVersion: VitForge.version, protecting: [model])
                print("\(out): ONNX opset \(ONNXExport.opset), input \"\(ONNXExport.inputName)\" "
                      + "[batch, \(weights.config.inChannels), \(weights.config.imageSize), \(weights.config.imageSize)], "
                      + "output \"\(ONNXExport.outputName)\" [batch, \(weights.config.classes)]"
                      + (weights.config.classNames == nil ? "" : "; class names and preprocessing in its metadata"))
            }
        }
    }
}
