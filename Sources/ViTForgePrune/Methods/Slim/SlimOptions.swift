import ArgumentParser
import ViTForgeModel

extension AttentionMaskGranularity: ExpressibleByArgument {}

/// ViT-Slim's own flags (METHODS.md §2). Token masks (§2.b) are not implemented yet.
public struct SlimOptions: MethodOptions {
    public static let methods: [any PruningMethod.Type] = [ViTSlim.self]
    public static let title = "ViT-Slim options (--method slim)"

    public init() {}

    @Option(help: ArgumentHelp("Attention masks: dim (one value per head and dim, on its q, k and v), head (one per "
                               + "head) or uniform (one per dim index, shared by the heads). Token masks are not "
                               + "searched yet.", valueName: "granularity"))
    var slimGranularity = AttentionMaskGranularity.dim

    @Option(help: "ℓ1 weight on the attention masks (effective, per-batch-mean loss: the paper's 2e-4 over 4 GPUs).")
    var slimAttnPenalty = 5e-5

    @Option(help: "ℓ1 weight on the MLP masks (effective: the paper's 5e-5 over 4 GPUs).")
    var slimMlpPenalty = 1.25e-5

    @Option(help: "Label smoothing of the search's cross-entropy (the DeiT loss ViT-Slim searches with).")
    var searchLabelSmoothing = 0.1

    @Option(help: "Fraction of attention mask entries kept (default: --keep-mlp's).")
    var keepAttn: Double?

    @Option(help: "With a --target-*: attention keeps min(1, ratio · r) of its entries when the MLP keeps r.")
    var attnMlpRatio = 1.0

    @Flag(help: "Snap the kept masks to 1 as the released code does (ablation) instead of folding their values in.")
    var noFold = false

    @Option(help: ArgumentHelp("Keep the searched model and masks here, to cut other budgets with --from-search.",
                               valueName: "file"))
    var saveSearch: String?

    @Option(help: ArgumentHelp("Cut a search saved with --save-search instead of searching (no --epochs).",
                               valueName: "file"))
    var fromSearch: String?

    public func validate() throws {
        if !(slimAttnPenalty >= 0) || !(slimMlpPenalty >= 0) { throw ValidationError("ℓ1 weights must be ≥ 0") }
        if !(0 ..< 1).contains(searchLabelSmoothing) {
            throw ValidationError("--search-label-smoothing must be in [0, 1)")
        }
    }

    public var budgetFlags: [(flag: String, value: Double?)] { [("--keep-attn", keepAttn)] }
    public var inputFiles: [(flag: String, path: String?)] { [("--from-search", fromSearch)] }
    public var outputFiles: [(flag: String, path: String?)] { [("--save-search", saveSearch)] }

    public func method(named name: String) throws -> any PruningMethod {
        ViTSlim(options: .init(granularity: slimGranularity, attentionPenalty: slimAttnPenalty,
                               mlpPenalty: slimMlpPenalty, searchLabelSmoothing: searchLabelSmoothing,
                               keepAttention: keepAttn, attentionToMLPRatio: attnMlpRatio, fold: !noFold,
                               saveSearch: saveSearch, fromSearch: fromSearch))
    }
}
