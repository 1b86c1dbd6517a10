import ArgumentParser
import ViTForgeFormats
import ViTForgeModel

/// `--heads`, shared by the commands that read a model.
struct HeadsOption: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Attention heads per block, for a plain timm file whose shapes cannot tell (stored config, else known widths).",
        valueName: "heads"))
    var heads: Int?

    func validate() throws {
        if let heads, heads < 1 { throw ValidationError("--heads must be at least 1") }
    }
}

/// `--batch-size`, shared by the commands that run the model over many images.
struct BatchSizeOption: ParsableArguments {
    @Option(help: "Images per forward pass (the last batch may be smaller).")
    var batchSize = 64

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }
}

/// The named shape `--arch NAME` asks for, or a one-line error listing the known names.
func architecture(_ name: String) throws -> ViTConfig {
    guard let config = Architectures.named(name) else {
        throw ValidationError("--arch \(name): unknown; known: \(Architectures.names.joined(separator: ", "))")
    }
    return config
}

/// Where a command writing OUT keeps its resumable checkpoint (train, prune and demo all say OUT.checkpoint.safetensors).
func checkpointPath(for out: String) -> String { out + ".checkpoint.safetensors" }
