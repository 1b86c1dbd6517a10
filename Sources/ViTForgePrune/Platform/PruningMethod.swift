import ViTForgeData
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTrain

/// A pruning method: one file that reads like its paper section — score → select → (train) → surgery — calling the
/// shared pieces (channel spaces, groups, `ScoredSpaces`, `Budget.solve`, `Surgery`, `TrainingPhase` with terms and
/// hooks). `vitforge prune --method NAME` finds it in `PruningMethods.all`; the pipeline evaluates, fine-tunes
/// (`--finetune-epochs`), times and reports around it, the same for every method.
public protocol PruningMethod {
    /// `--method NAME`.
    static var name: String { get }
    /// One line for `--help` and reports.
    static var summary: String { get }
    /// Whether the method has a training phase of its own before or while it cuts (`--epochs`).
    static var hasTrainingPhase: Bool { get }
    /// The run's shared settings (`PruningContext`) the method reads; `prune` refuses the flag of any other, so a
    /// setting is never silently ignored.
    static var sharedSettings: Set<SharedSetting> { get }
    /// What a run given no --keep-* and no --target-* prunes to (default: `Budget.defaultKeepMLP` of the MLP neurons).
    static var defaultBudget: DefaultBudget { get }
    /// How the method uses a shared setting, for `prune --help` (e.g. CPD's validation split picks the epoch).
    static var settingNotes: [SharedSetting: String] { get }
    /// The rounding of a run given no `--round-to` (`Budget.requestedRounding` nil): counts as asked, but Vulcan's
    /// multiples of 8 (its paper's rule).
    static var defaultRounding: WidthRounding { get }
    /// The budget and epochs this method cannot serve, as one line (checked before any work).
    func problem(with budget: Budget, epochs: Int) -> String?
    /// Fails early (before any data pass) when `budget` cannot be met on a model of `config`.
    func checkReach(_ budget: Budget, config: ViTConfig) throws
    /// Score, select, (train), compensate and cut. Returns the smaller model; `stopped` when Ctrl-C interrupted the
    /// method's training phase (its checkpoint then holds the position, and `--resume` continues).
    func prune(_ context: PruningContext) throws -> MethodOutcome
}

/// Settings of `PruningContext` that only some methods read.
public enum SharedSetting: String, CaseIterable, Sendable {
    /// `scope`: one ranking over all blocks or a fraction per block (`--scope`).
    case rankingScope
    /// `calibrationImages`: how many images statistics or gradients are taken over (`--calib-images`).
    case calibrationImages
    /// `--compensate`: the method makes a one-shot cut it reports (`MethodOutcome.cut`), which the pipeline may
    /// refit by least squares (`CompensationSettings`).
    case compensation
    /// `validationFraction`: the share of the training images a method picks its result on (`--val-fraction`).
    case validationFraction
    /// `compensationRidge`: the refit's ridge, which a method whose costs assume the refit reads even without
    /// `--compensate` (`--compensate-ridge`).
    case compensationRidge
}

/// What a run given no budget flags prunes to.
public enum DefaultBudget: Equatable, Sendable {
    /// Keep this fraction of the MLP neurons.
    case keepMLP(Double)
    /// The method's own setting decides: its flag, default value and what the value does (for the run's first line
    /// and the report's budget column).
    case methodSetting(flag: String, value: Double, meaning: String)
}

extension PruningMethod {
    public var name: String { Self.name }

    public static var sharedSettings: Set<SharedSetting> { [] }

    public static var defaultBudget: DefaultBudget { .keepMLP(Budget.defaultKeepMLP) }

    public static var settingNotes: [SharedSetting: String] { [:] }

    public static var defaultRounding: WidthRounding { .multiple(1) }

    public func checkReach(_ budget: Budget, config: ViTConfig) throws {}

    public func problem(with budget: Budget, epochs: Int) -> String? {
        if epochs > 0 && !Self.hasTrainingPhase {
            return "\(Self.name) has no training phase of its own (--epochs); use --finetune-epochs to fine-tune after the cut"
        }
        return nil
    }
}
