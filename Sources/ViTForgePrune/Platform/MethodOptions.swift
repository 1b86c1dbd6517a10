import ArgumentParser

/// A method's own flags, one option group in the method's folder (or one per family of methods sharing flags),
/// registered in `MethodOptionGroups`. `vitforge prune` parses every group and asks the one that serves `--method`
/// for the configured method; its flags appear in `prune --help` under the group's title.
public protocol MethodOptions: ParsableArguments {
    /// The methods these flags configure, in `--method`'s order (`PruningMethods.all` is every group's, in turn).
    static var methods: [any PruningMethod.Type] { get }
    /// The title of the group in `prune --help`.
    static var title: String { get }
    /// The method `name`, configured from these flags.
    func method(named name: String) throws -> any PruningMethod
    /// Calibration images for `name` when the user gave `requested` (nil: the method's default).
    func calibrationImages(for name: String, requested: Int?, batchSize: Int) -> Int?
    /// The methods that read the flag of `property` (default: all of `methods`; a group serving several methods
    /// narrows it for a flag only some of them read). `prune` refuses the flag for any other method.
    static func methods(reading property: String) -> [any PruningMethod.Type]
    /// A conflict of these flags with the run's `--compensate`/`--no-compensate` (nil: neither given), as one line
    /// (nil: none).
    func problem(compensate: Bool?) -> String?
    /// Whether a run that gives neither `--compensate` nor `--no-compensate` compensates, as far as these flags go
    /// (vbp's ablation `--no-bias-fold` turns the default off; default true).
    var compensatesByDefault: Bool { get }
    /// Flags of the group that set the budget (ViT-Slim's --keep-attn), with their values, for the report.
    var budgetFlags: [(flag: String, value: Double?)] { get }
    /// Files the group's flags read and write, checked with the command's before any work.
    var inputFiles: [(flag: String, path: String?)] { get }
    var outputFiles: [(flag: String, path: String?)] { get }
}

extension MethodOptions {
    public static func methods(reading property: String) -> [any PruningMethod.Type] { methods }

    public func calibrationImages(for name: String, requested: Int?, batchSize: Int) -> Int? { requested }

    public func problem(compensate: Bool?) -> String? { nil }
    public var compensatesByDefault: Bool { true }
    public var budgetFlags: [(flag: String, value: Double?)] { [] }
    public var inputFiles: [(flag: String, path: String?)] { [] }
    public var outputFiles: [(flag: String, path: String?)] { [] }
}
