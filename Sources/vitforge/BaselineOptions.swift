import ArgumentParser
import ViTForgePrune

/// The baselines' own flags (magnitude, Taylor, random).
struct BaselineOptions: MethodOptions {
    static let methods = [MagnitudePruning.name, TaylorPruning.name, RandomPruning.name]
    static let title = "Baseline options (--method magnitude|taylor|random)"

    @Option(help: "Taylor: accumulate gradients over this many batches of --batch-size (overrides --calib-images; default 2048 images).")
    var calibBatches: Int?

    func validate() throws {
        if let calibBatches, calibBatches < 1 { throw ValidationError("--calib-batches must be at least 1") }
    }

    func method(named name: String) throws -> any PruningMethod {
        switch name {
        case MagnitudePruning.name: return MagnitudePruning()
        case TaylorPruning.name: return TaylorPruning()
        default: return RandomPruning()
        }
    }

    static func methods(reading property: String) -> [String] {
        property == "calibBatches" ? [TaylorPruning.name] : methods
    }

    func calibrationImages(for name: String, requested: Int?, batchSize: Int) -> Int? {
        guard name == TaylorPruning.name else { return requested }
        return calibBatches.map { $0 * batchSize } ?? requested ?? 2048
    }
}
