import ArgumentParser

/// The baselines' own flags (magnitude, Taylor, random).
public struct BaselineOptions: MethodOptions {
    public static let methods: [any PruningMethod.Type] = [MagnitudePruning.self, TaylorPruning.self,
                                                           RandomPruning.self]
    public static let title = "Baseline options (--method \(methods.map { $0.name }.joined(separator: "|")))"

    public init() {}

    @Option(help: "Taylor: accumulate gradients over this many batches of --batch-size (overrides --calib-images; default 2048 images).")
    var calibBatches: Int?

    public func validate() throws {
        if let calibBatches, calibBatches < 1 { throw ValidationError("--calib-batches must be at least 1") }
    }

    public func method(named name: String) throws -> any PruningMethod {
        switch name {
        case MagnitudePruning.name: return MagnitudePruning()
        case TaylorPruning.name: return TaylorPruning()
        default: return RandomPruning()
        }
    }

    public static func methods(reading property: String) -> [any PruningMethod.Type] {
        property == "calibBatches" ? [TaylorPruning.self] : methods
    }

    public func calibrationImages(for name: String, requested: Int?, batchSize: Int) -> Int? {
        guard name == TaylorPruning.name else { return requested }
        return calibBatches.map { $0 * batchSize } ?? requested ?? 2048
    }
}
