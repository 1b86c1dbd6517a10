import ArgumentParser

extension VarianceBasedPruning.Score: ExpressibleByArgument {}

/// VBP's own flags (METHODS.md §1).
public struct VBPOptions: MethodOptions {
    public static let methods: [any PruningMethod.Type] = [VarianceBasedPruning.self]
    public static let title = "VBP options (--method vbp)"

    public init() {}

    @Flag(help: "VBP without the mean-shift compensation (ablation).")
    var noBiasFold = false

    @Option(help: "VBP's ranking score: variance (the paper) or output-variance (variance × ‖fc2 column‖², the error the mean-shift fold leaves in the block output).")
    var vbpScore = VarianceBasedPruning.Score.variance

    public func problem(compensate: Bool?) -> String? {
        // The refit replaces the mean shift; the ablation without it has nothing left to switch off.
        compensate == true && noBiasFold
            ? "--compensate replaces vbp's mean shift by the full refit; drop --no-bias-fold" : nil
    }

    /// The ablation --no-bias-fold measures the plain cut: no compensation unless --compensate is given.
    public var compensatesByDefault: Bool { !noBiasFold }

    public func method(named name: String) throws -> any PruningMethod {
        VarianceBasedPruning(options: .init(biasFold: !noBiasFold, score: vbpScore))
    }
}
