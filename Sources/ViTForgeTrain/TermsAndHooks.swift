import ViTForgeModel

/// A loss term a method adds beside cross-entropy and distillation: an ℓ1 penalty on soft masks (ViT-Slim), a
/// collapse loss or a singular-value tail penalty weighted by learned multipliers (Vulcan). The trainer calls
/// `addGradient` once per step, after the backward of CE/KD and before clipping, so the term's gradient is clipped
/// and applied with the rest.
public protocol TrainingTerm: AnyObject {
    /// The key of the term's value in `LossValue.terms` and the logs.
    var name: String { get }
    /// Adds d term / d x into the gradient buffers of whatever the term depends on (`trainer.model.gradients`, the
    /// gradient buffers of the optimizer slots the term owns) and returns the term's value, which the trainer adds
    /// to the step's loss.
    func addGradient(_ trainer: Trainer) throws -> Double
}

/// Work a method does after every optimizer step: a pruning schedule, a multiplier update, re-anchoring clusters.
/// Whatever it must remember goes into the checkpoint through `checkpointState()`, so a killed run resumes
/// bit-identically.
public protocol TrainingHook: AnyObject {
    /// Names the hook's state in checkpoints; unique among a trainer's hooks.
    var name: String { get }
    /// True when `afterStep` may change the model's shape (`Trainer.replaceModel`): `resume` then accepts a
    /// checkpoint whose model is smaller than the trainer's.
    var changesShape: Bool { get }
    /// Runs after the backward and the terms, before clipping and the optimizer step: the weights and the
    /// gradients of this step's loss sit side by side (CPD's Fisher scores read `w·∂L/∂w` here). Must not change
    /// them.
    func afterBackward(_ trainer: Trainer) throws
    /// Runs after the optimizer step and the position update (`trainer.state.step` counts the step just taken).
    func afterStep(_ trainer: Trainer) throws
    /// What `restore` needs to continue exactly.
    func checkpointState() throws -> HookState
    /// Called by `Trainer.resume` after the model, optimizer and position are restored.
    func restore(_ state: HookState, trainer: Trainer) throws
}

extension TrainingHook {
    public var changesShape: Bool { false }
    public func afterBackward(_ trainer: Trainer) throws {}
    public func checkpointState() throws -> HookState { HookState() }
    public func restore(_ state: HookState, trainer: Trainer) throws {}
}

/// A hook's checkpointed state: small values as a JSON string (the hook's own Codable), tensors by key. Saved as
/// `vitforge.checkpoint`'s `state.hooks[name]` and tensors `hook.<name>.<key>`.
public struct HookState: Equatable, Sendable {
    public var json: String
    public var tensors: [String: [Float]]

    public init(json: String = "", tensors: [String: [Float]] = [:]) {
        self.json = json
        self.tensors = tensors
    }
}
