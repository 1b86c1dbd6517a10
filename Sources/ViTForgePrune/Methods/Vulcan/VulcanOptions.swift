import ArgumentParser

/// Vulcan's own flags (METHODS.md §3). The subset is `--classes` (shared with every method: it restricts the data).
public struct VulcanOptions: MethodOptions {
    public static let methods: [any PruningMethod.Type] = [Vulcan.self]
    public static let title = "Vulcan options (--method vulcan; the subset is --classes)"

    public init() {}

    @Option(help: ArgumentHelp("Vulcan's R: the share REMOVED (of MLP neurons, and on average of the q·k and v·o "
                               + "dims), as in the paper — unlike --keep-* and --target-*, which are fractions kept. "
                               + "Default 0.6 unless --target-params/--target-macs is given (then R is solved).",
                               valueName: "R"))
    var pruneRatio: Double?

    @Option(help: "Learning rate ρ of the Lagrange multipliers (Adam ascent).")
    var rho = 1.0

    @Option(help: "Stop post-training once both constraints (normalised ℓ1) are below this.")
    var constraintEpsilon = 1e-3

    @Option(help: ArgumentHelp("Every N steps, cut a copy and evaluate it on a validation split of the subset's "
                               + "training images; the best one is the result (0: the last one).", valueName: "N"))
    var evalEvery = 0

    @Flag(help: "At surgery, slice the classifier to the --classes (the model records their ids).")
    var trimHead = false

    @Flag(help: "Also fine-tune the base on the subset for the same epochs (no constraints); the report adds its accuracy.")
    var compareFinetunedBase = false

    public var budgetFlags: [(flag: String, value: Double?)] { [("--prune-ratio", pruneRatio)] }

    public func method(named name: String) throws -> any PruningMethod {
        var options = Vulcan.Options(pruneRatio: pruneRatio, rho: rho, epsilon: constraintEpsilon,
                                     evalEvery: evalEvery, trimHead: trimHead)
        options.compareFinetunedBase = compareFinetunedBase
        return Vulcan(options: options)
    }
}
