import ArgumentParser
import ViTForgeModel

extension AttentionMaskGranularity: ExpressibleByArgument {}
extension SlimPenaltySchedule: ExpressibleByArgument {}

/// ViT-Slim's own flags (METHODS.md §2), token masks (§2.b) included.
public struct SlimOptions: MethodOptions {
    public static let methods: [any PruningMethod.Type] = [ViTSlim.self]
    public static let title = "ViT-Slim options (--method slim)"

    public init() {}

    @Option(help: ArgumentHelp("Attention masks: dim (one value per head and dim, on its q, k and v), head (one per "
                               + "head) or uniform (one per dim index, shared by the heads).", valueName: "granularity"))
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

    @Option(help: ArgumentHelp("Search token masks (tanh(ρ) per block and position, on the LayerNorm outputs) and "
                               + "keep this fraction of the patch-token entries, made monotone in depth; the cut "
                               + "gathers the kept tokens physically. With --target-macs/--target-latency the tokens "
                               + "stay at this fraction and the target solves attention and MLP.", valueName: "r"))
    var keepTokens: Double?

    @Option(help: "ℓ1 weight on the token masks tanh(ρ) (effective: the paper's 1e-4 over 4 GPUs).")
    var slimTokenPenalty = 2.5e-5

    @Option(help: "Multiplies the learning rate of the token masks' ρ (Adam moves ρ by about lr per step).")
    var slimTokenLrScale = 1.0

    @Option(help: ArgumentHelp("Peak learning rate of the attention and MLP masks (the weights follow --lr; Adam "
                               + "moves a mask by about this per step, so a short search needs it well above --lr).",
                               valueName: "lr"))
    var slimMaskLr = ViTSlim.Options.defaultMaskLearningRate ?? 1e-4

    @Option(help: ArgumentHelp("How the ℓ1 weights move over the search: constant (the paper's), ramp (every entry "
                               + "gets an extra weight growing from 0 to --slim-penalty-peak) or budget (only the "
                               + "entries this run's budget would remove at the current values get it, so they reach "
                               + "≈ 0 and the cut keeps what the search learned; a search for this budget: "
                               + "--from-search at another budget cuts masks pushed for this one).",
                               valueName: "schedule"))
    var slimPenaltySchedule = ViTSlim.Options.defaultPenaltySchedule

    @Option(help: "The schedule's extra ℓ1 weight at its peak.")
    var slimPenaltyPeak = ViTSlim.Options.defaultPenaltyPeak

    @Option(help: ArgumentHelp("Share of the search over which the extra weight ramps up from 0 to its peak.",
                               valueName: "fraction"))
    var slimPenaltyRamp = ViTSlim.Options.defaultPenaltyRampFraction

    @Flag(help: "Snap the kept masks to 1 as the released code does (ablation) instead of folding their values in.")
    var noFold = false

    @Option(help: ArgumentHelp("Keep the searched model and masks here, to cut other budgets with --from-search.",
                               valueName: "file"))
    var saveSearch: String?

    @Option(help: ArgumentHelp("Cut a search saved with --save-search instead of searching (no --epochs).",
                               valueName: "file"))
    var fromSearch: String?

    public func validate() throws {
        if !(slimAttnPenalty >= 0) || !(slimMlpPenalty >= 0) || !(slimTokenPenalty >= 0) {
            throw ValidationError("ℓ1 weights must be ≥ 0")
        }
        if !(slimTokenLrScale > 0) || !slimTokenLrScale.isFinite {
            throw ValidationError("--slim-token-lr-scale must be positive")
        }
        if !(0 ..< 1).contains(searchLabelSmoothing) {
            throw ValidationError("--search-label-smoothing must be in [0, 1)")
        }
    }

    // Tokens are a budget beside the others (a --target-* solves attention and MLP with them fixed).
    public var budgetFlags: [(flag: String, value: Double?)] {
        [("--keep-attn", keepAttn), ("--keep-tokens", keepTokens)]
    }
    public var inputFiles: [(flag: String, path: String?)] { [("--from-search", fromSearch)] }
    public var outputFiles: [(flag: String, path: String?)] { [("--save-search", saveSearch)] }

    public func method(named name: String) throws -> any PruningMethod {
        var options = ViTSlim.Options(granularity: slimGranularity, attentionPenalty: slimAttnPenalty,
                                      mlpPenalty: slimMlpPenalty, searchLabelSmoothing: searchLabelSmoothing,
                                      keepAttention: keepAttn, attentionToMLPRatio: attnMlpRatio, fold: !noFold,
                                      saveSearch: saveSearch, fromSearch: fromSearch)
        options.keepTokens = keepTokens
        options.tokenPenalty = slimTokenPenalty
        options.tokenLearningRateScale = slimTokenLrScale
        options.maskLearningRate = slimMaskLr
        options.penaltySchedule = slimPenaltySchedule
        options.penaltyPeak = slimPenaltyPeak
        options.penaltyRampFraction = slimPenaltyRamp
        return ViTSlim(options: options)
    }
}
