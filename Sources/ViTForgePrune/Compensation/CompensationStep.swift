import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

/// What a one-shot method cut: the full weights surgery was applied to and the keep plan. A method that returns it
/// (`MethodOutcome.cut`) can be compensated (`--compensate`): the pipeline refits `source` to `plan` and cuts again.
public struct PlannedCut {
    /// The full-size weights the method handed to surgery, before any compensation of its own (VBP: before its
    /// mean shift, which the refit replaces; ViT-Slim: the searched model with its masks folded).
    public var source: ViTWeights
    public var plan: KeepPlan

    public init(source: ViTWeights, plan: KeepPlan) {
        self.source = source
        self.plan = plan
    }
}

/// `--compensate` and `--compensate-ridge`: the pipeline's least-squares refit after the cut.
public struct CompensationSettings: Equatable, Sendable {
    /// λ relative to the mean input variance of each layer (`LeastSquaresRefit`).
    public var ridge: Double
    public var order: Order

    /// `--compensate-order`: which inputs each layer is refitted on.
    public enum Order: String, CaseIterable, Sendable {
        /// The unpruned model's, every layer from one calibration pass (`Compensation.compensate`).
        case parallel
        /// The pruned and refitted upstream's, layer by layer in depth order, then the classifiers: one pass per
        /// layer (`Compensation.compensateSequentially`).
        case sequential
    }

    public static let defaultOrder = Order.sequential
    /// At most this many calibration images when the run does not name a number (`images`): the sequential refit
    /// makes one pass per layer, and the measured rows used 2000.
    public static let defaultImages = 2048

    /// A cap on the calibration images the refit reads (nil: the run's `--calib-images`, else all).
    public var images: Int?

    public init(ridge: Double = LeastSquaresRefit.defaultRidge, order: Order = CompensationSettings.defaultOrder,
                images: Int? = nil) {
        self.ridge = ridge
        self.order = order
        self.images = images
    }

    /// Why CPD and Vulcan refuse the flag (the methods without `SharedSetting.compensation`), for the error line and
    /// the help text.
    public static let refusal = "the refit needs a one-shot cut of the trained weights: cpd cuts inside its "
        + "training, which re-fits the weights after every cut, and vulcan merges neurons and re-factorises "
        + "attention by SVD rather than keeping a subset of channels, exactly when its constraints are met"

    /// The method's outcome with its cut refitted (`Compensation.compensate`) and cut again, and the records of each
    /// refitted layer. Uses the run's calibration images (`--calib-images`, the first N of the training split).
    public func apply(to outcome: MethodOutcome, context: PruningContext, method: String) throws
        -> (outcome: MethodOutcome, records: [Compensation.LayerRecord]) {
        guard let cut = outcome.cut else {
            throw PruneError.invalidBudget("--compensate: \(method) did not report the cut it made")
        }
        let limit = images.map { min($0, context.calibrationLimit ?? $0) } ?? context.calibrationLimit
        let (weights, records) = try order == .parallel
            ? Compensation.compensate(cut.source, plan: cut.plan, backend: context.backend,
                                      images: context.calibration, limit: limit, batchSize: context.batchSize,
                                      ridge: ridge)
            : Compensation.compensateSequentially(cut.source, plan: cut.plan, backend: context.backend,
                                                  images: context.calibration, limit: limit,
                                                  batchSize: context.batchSize, ridge: ridge)
        var result = outcome
        result.weights = try Surgery.prune(weights, plan: cut.plan)
        for record in records {
            context.log("compensate \(record.layer): \(record.removed) of \(record.kept + record.removed) inputs removed, "
                        + "output error (of its variance) cut \(Formatting.percent(record.error.cut)), mean shift "
                        + "\(Formatting.percent(record.error.meanShift)), refit \(Formatting.percent(record.error.refit))")
        }
        return (result, records)
    }
}
