import ArgumentParser
import ViTForgeFormats
import ViTForgeModel

/// Prints a model's configuration, parameter count and MACs per block.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show a model's configuration, parameter count and MACs per block.",
        discussion: """
            MACs count the products of one forward pass on one image (linear layers tokens·in·out; attention \
            tokens²·qk per head for q·kᵀ and tokens²·v per head for ·v). Heads come from --heads, the stored \
            vitforge.config, or the known timm widths, and the output says which.
            """)

    @Argument(help: "The model (safetensors, timm key names).")
    var model: String

    @OptionGroup var heads: HeadsOption
    @OptionGroup var common: CommonOptions

    func run() throws {
        try reportingErrors {
            let weights = try ViTWeights.load(path: model, heads: heads.heads)
            let config = weights.config
            let source: String
            switch weights.headsSource {
            case .metadata: source = "stored vitforge.config"
            case .argument: source = "--heads"
            case .knownWidth: source = "the standard timm head count for width \(config.residualWidth)"
            case .huggingFaceConfig: source = "num_attention_heads in the Hugging Face config.json"
            case nil: source = "unknown"
            }
            let cost = config.cost()
            print("""
                model:          \(model)
                image:          \(config.inChannels)×\(config.imageSize)×\(config.imageSize), patch \(config.patchSize) \
                (\(config.patchCount) patches, \(config.tokens) tokens)
                classes:        \(config.classes)\(config.classNames.map { " (\(ClassFit.list($0)))" } ?? " (no names)")
                width:          \(config.residualWidth), depth \(config.depth)
                pooling:        \(config.pooling.rawValue) (final norm \(config.finalNormName))
                class token:    \(config.classToken ? "yes" : "no"); distillation token: \
                \(config.distillationToken ? "yes (two heads, averaged)" : "no")
                qkv bias:       \(config.qkvBias ? "yes" : "no")
                heads from:     \(source)
                parameters:     \(config.parameterCount)
                MACs per image: \(cost.macs)
                """)
            print("block  heads  qkDim  vDim  mlpHidden  scale")
            for (index, block) in config.blocks.enumerated() {
                // Heads of different widths print each head's width ("3,5,2").
                print([String(index).padding(6), String(block.heads).padding(6),
                       BlockConfig.widths(block.qkDims).padding(6), BlockConfig.widths(block.vDims).padding(5),
                       String(block.mlpHidden).padding(10),
                       String(block.attentionScale)].joined(separator: " "))
            }
            if config.tokenSets != nil {
                // Static token pruning: how many of the tokens each block runs on.
                print("tokens per block: " + (0..<config.depth).map { String(config.tokens(inBlock: $0)) }
                    .joined(separator: " ") + " (of \(config.tokens))")
            }
            print(cost.table(config: config))
        }
    }
}
