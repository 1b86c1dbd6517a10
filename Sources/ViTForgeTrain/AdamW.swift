import ViTForgeDevice
import ViTForgeModel

/// AdamW's hyper-parameters apart from the learning rate, which the schedule supplies per step.
/// Defaults are `torch.optim.AdamW`'s betas and eps with the fixtures' weight decay.
public struct AdamWSettings: Codable, Equatable, Sendable {
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    /// Decoupled weight decay (Loshchilov & Hutter), applied only where `AdamW.decays(_:)` says so.
    public var weightDecay: Double

    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.05) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }
}

/// AdamW over every parameter of one `VisionTransformer`: first and second moments as device buffers per parameter
/// tensor, the step counter, the per-tensor weight-decay policy, and optional update masks (pruning keeps removed
/// weights and their moments frozen where `mask == 0`). One `Backend.adamwStep` per tensor and step, which computes
/// exactly `torch.optim.AdamW` (single-tensor path): decay `p ← p·(1 − lr·wd)` first, then the bias-corrected update.
public final class AdamW {
    /// One parameter tensor's optimizer state, with the model's buffers looked up once.
    struct Slot {
        let spec: ParameterSpec
        let parameter: Buffer
        let gradient: Buffer
        let firstMoment: Buffer   // m, [elementCount]
        let secondMoment: Buffer  // v, [elementCount]
        let weightDecay: Float
        var mask: Buffer?         // [elementCount], 1 = train, 0 = frozen; nil = all trained
    }

    public let settings: AdamWSettings
    /// Optimizer steps taken so far; the next step is `stepCount + 1` (torch's 1-based `state['step']`).
    public internal(set) var stepCount = 0
    let backend: Backend
    private(set) var slots: [Slot]
    private let slotIndex: [String: Int]

    /// Zero moments for every parameter of `model` (allocating its gradient buffers if no step has run yet).
    public init(model: VisionTransformer, settings: AdamWSettings) throws {
        self.settings = settings
        backend = model.backend
        if model.gradients.isEmpty { try model.zeroGradients() }
        var slots: [Slot] = []
        var slotIndex: [String: Int] = [:]
        for spec in model.config.parameterSpecs() {
            guard let parameter = model.parameters[spec.name], let gradient = model.gradients[spec.name] else {
                throw TrainingError.invalidState("model has no parameter or gradient buffer \(spec.name)")
            }
            slotIndex[spec.name] = slots.count
            slots.append(Slot(spec: spec, parameter: parameter, gradient: gradient,
                              firstMoment: try backend.zeros(spec.elementCount),
                              secondMoment: try backend.zeros(spec.elementCount),
                              weightDecay: Self.decays(spec) ? Float(settings.weightDecay) : 0, mask: nil))
        }
        self.slots = slots
        self.slotIndex = slotIndex
    }

    /// timm's `param_groups_weight_decay`: decay matrices and convolution kernels (ndim ≥ 2), but not 1-D tensors
    /// (biases, LayerNorm gains and shifts) nor the learned tokens and position embedding, which are 3-D yet act
    /// like biases of the token sequence (`no_weight_decay()` = {pos_embed, cls_token, dist_token}).
    public static func decays(_ spec: ParameterSpec) -> Bool {
        spec.shape.count >= 2 && !["pos_embed", "cls_token", "dist_token"].contains(spec.name)
    }

    /// The weight decay this optimizer applies to a parameter (0 or `settings.weightDecay`).
    public func weightDecay(of name: String) throws -> Float { try slot(name).weightDecay }

    /// One AdamW update of every parameter from the gradients currently in the model's gradient buffers.
    public func step(learningRate: Double) throws {
        stepCount += 1
        var hyper = AdamWHyperparameters(learningRate: Float(learningRate), beta1: Float(settings.beta1),
                                         beta2: Float(settings.beta2), eps: Float(settings.eps), weightDecay: 0,
                                         step: stepCount)
        for slot in slots {
            hyper.weightDecay = slot.weightDecay
            try backend.adamwStep(param: slot.parameter, grad: slot.gradient, m: slot.firstMoment,
                                  v: slot.secondMoment, mask: slot.mask, count: slot.spec.elementCount, hyper: hyper)
        }
    }

    // MARK: Masks

    /// Freezes the elements of `name` where `mask[i] == 0` (pruned weights); nil trains every element again.
    public func setMask(_ name: String, _ mask: [Float]?) throws {
        let index = try index(of: name)
        guard let mask else {
            slots[index].mask = nil
            return
        }
        guard mask.count == slots[index].spec.elementCount else {
            throw TrainingError.invalidState("mask for \(name) has \(mask.count) elements, the parameter has "
                                             + "\(slots[index].spec.elementCount)")
        }
        if let existing = slots[index].mask {
            try backend.write(mask, to: existing)
        } else {
            slots[index].mask = try backend.makeBuffer(mask)
        }
    }

    /// Names of the parameters that have an update mask.
    public var maskedParameters: [String] { slots.filter { $0.mask != nil }.map(\.spec.name) }

    // MARK: State (checkpoints)

    /// The moments (and mask, if any) of one parameter, copied to the host.
    func hostState(_ name: String) throws -> (firstMoment: [Float], secondMoment: [Float], mask: [Float]?) {
        let slot = try slot(name)
        let count = slot.spec.elementCount
        return (try backend.read(slot.firstMoment, count: count), try backend.read(slot.secondMoment, count: count),
                try slot.mask.map { try backend.read($0, count: count) })
    }

    /// Restores one parameter's moments exactly as saved.
    func restore(_ name: String, firstMoment: [Float], secondMoment: [Float]) throws {
        let slot = try slot(name)
        guard firstMoment.count == slot.spec.elementCount, secondMoment.count == slot.spec.elementCount else {
            throw TrainingError.invalidState("optimizer moments for \(name) have the wrong size")
        }
        try backend.write(firstMoment, to: slot.firstMoment)
        try backend.write(secondMoment, to: slot.secondMoment)
    }

    private func index(of name: String) throws -> Int {
        guard let index = slotIndex[name] else { throw TrainingError.invalidState("no parameter \(name)") }
        return index
    }

    private func slot(_ name: String) throws -> Slot { slots[try index(of: name)] }
}
