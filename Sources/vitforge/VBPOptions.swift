import ArgumentParser
import ViTForgePrune

extension VarianceBasedPruning.Score: ExpressibleByArgument {}

/// VBP's own flags (METHODS.md §1).
struct VBPOptions: MethodOptions {
    static let methods = [VarianceBasedPruning.name]
    static let title = "VBP options (--method vbp)"

    @Flag(help: "VBP without the mean-shift compensation (ablation).")
    var noBiasFold = false

    @Option(help: "VBP's ranking score: variance (the paper) or output-variance (variance × ‖fc2 column‖², the error the mean-shift fold leaves in the block output).")
    var vbpScore = VarianceBasedPruning.Score.variance

    func method(named name: String) throws -> any PruningMethod {
        VarianceBasedPruning(options: .init(biasFold: !noBiasFold, score: vbpScore))
    }
}
