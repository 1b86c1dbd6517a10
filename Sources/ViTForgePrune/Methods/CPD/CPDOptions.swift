import ArgumentParser

/// CPD's own flags (METHODS.md §4). The budget is one --target-*; --epochs is the training run the pruning happens
/// in; --distill (with --alpha, --temperature) distils from the frozen unpruned model throughout.
public struct CPDOptions: MethodOptions {
    public static let methods: [any PruningMethod.Type] = [CPD.self]
    public static let title = "CPD options (--method cpd)"

    public init() {}

    @Option(help: "Steps between cuts; scores accumulate over the interval and reset after each cut.")
    var pruneInterval = 50

    @Option(help: "MLP neurons one cut removes from a block (CPD's FFN group size).")
    var mlpStep = 32

    @Option(help: "Residual channels one cut removes (default: the model's head count, CPD's ViT residual group).")
    var residualStep: Int?

    @Option(help: ArgumentHelp("Reach the target by this share of the run's steps (a cut removes several blocks when "
                               + "one per interval would not get there); the rest of the run trains the final shape."))
    var pruneUntil = 0.75

    public func method(named name: String) throws -> any PruningMethod {
        CPD(options: .init(pruneInterval: pruneInterval, mlpStep: mlpStep, residualStep: residualStep,
                           finishFraction: pruneUntil))
    }
}
