/// One cut of a gradual pruning run, for the report's trajectory.
public struct PruningStepRecord: Codable, Equatable, Sendable {
    /// The training step after which the cut happened.
    public var step: Int
    /// The blocks removed, least important first: `blocks.3.mlpHidden −32`, `residual −6`, `blocks.1.qkDims −6`.
    public var removed: [String]
    public var params: Int
    public var macs: Int
    public var paramsFraction: Double
    public var macsFraction: Double
    /// Validation accuracy right after the cut, before training recovers (nil without a validation split).
    public var validationAccuracy: Double?

    enum CodingKeys: String, CodingKey {
        case step, removed, params, macs
        case paramsFraction = "params_fraction"
        case macsFraction = "macs_fraction"
        case validationAccuracy = "validation_accuracy"
    }
}
