import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel

/// AdamW's hyper-parameters apart from the learning rate, which the schedule supplies per step.
/// Defaults are `torch.optim.AdamW`'s betas and eps with the fixtures' weight decay.
public struct AdamWSettings: Codable, Equatable, Sendable {
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    /// Decoupled weight decay (Loshchilov & Hutter), applied only to slots that decay (`AdamW.decays(_:)` for the
    /// model's parameters, the `decays` flag for others).
    public var weightDecay: Double

    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.05) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }
}

/// One tensor AdamW updates: a model parameter, or something a method trains beside the model (soft masks, a
/// Lagrange multiplier). The slot's owner allocates `parameter` and `gradient`; AdamW owns the moments.
public struct OptimizerSlot {
    /// The model parameter's timm name, or the owner's name for an extra slot (never a parameter's name).
    public let name: String
    public let shape: [Int]
    public let parameter: Buffer
    public let gradient: Buffer
    /// Multiplies the schedule's learning rate: 1 for the model, another factor for a slot that learns faster or
    /// slower, negative for gradient ascent (a multiplier raised while its constraint is violated).
    public let learningRateScale: Double
    public let decays: Bool
    /// True for the model's parameters: they live in the model's buffers and are saved as the model.
    public let isModelParameter: Bool
    let firstMoment: Buffer   // m, [elementCount]
    let secondMoment: Buffer  // v, [elementCount]
    var mask: Buffer?         // [elementCount], 1 = train, 0 = frozen; nil = all trained

    public var elementCount: Int { shape.reduce(1, *) }
}

/// AdamW over an explicit list of slots: every parameter of one `VisionTransformer` first (in parameter order), then
/// any extra slots a method adds. First and second moments are device buffers per slot; the step counter is shared;
/// optional update masks keep removed weights and their moments frozen where `mask == 0`. One `Backend.adamwStep`
/// per slot and step, which computes exactly `torch.optim.AdamW` (single-tensor path): decay `p ← p·(1 − lr·wd)`
/// first, then the bias-corrected update, with the slot's own learning rate.
public final class AdamW {
    public let settings: AdamWSettings
    /// Optimizer steps taken so far; the next step is `stepCount + 1` (torch's 1-based `state['step']`).
    public internal(set) var stepCount = 0
    let backend: Backend
    public private(set) var slots: [OptimizerSlot] = []
    private var slotIndex: [String: Int] = [:]
    /// The gradient buffers of the descending slots (learning-rate scale > 0) with their element counts: what
    /// gradient clipping limits (an ascending multiplier is not part of that direction). Kept with the slots so
    /// that no step rebuilds the list.
    public private(set) var descendingGradients: [(Buffer, Int)] = []

    /// Zero moments for every parameter of `model` (allocating its gradient buffers if no step has run yet).
    public init(model: VisionTransformer, settings: AdamWSettings) throws {
        self.settings = settings
        backend = model.backend
        try attach(model)
    }

    /// Makes the model's parameters the first slots (replacing any model slots), each with zero moments, keeping
    /// extra slots after them.
    func attach(_ model: VisionTransformer) throws {
        if model.gradients.isEmpty { try model.zeroGradients() }
        var modelSlots: [OptimizerSlot] = []
        for spec in model.config.parameterSpecs() {
            guard let parameter = model.parameters[spec.name], let gradient = model.gradients[spec.name] else {
                throw TrainingError.invalidState("model has no parameter or gradient buffer \(spec.name)")
            }
            modelSlots.append(OptimizerSlot(
                name: spec.name, shape: spec.shape, parameter: parameter, gradient: gradient, learningRateScale: 1,
                decays: Self.decays(spec), isModelParameter: true, firstMoment: try backend.zeros(spec.elementCount),
                secondMoment: try backend.zeros(spec.elementCount), mask: nil))
        }
        setSlots(modelSlots + slots.filter { !$0.isModelParameter })
    }

    private func setSlots(_ newSlots: [OptimizerSlot]) {
        slots = newSlots
        slotIndex = Dictionary(uniqueKeysWithValues: newSlots.enumerated().map { ($1.name, $0) })
        descendingGradients = newSlots.filter { $0.learningRateScale > 0 }.map { ($0.gradient, $0.elementCount) }
    }

    /// Adds a tensor to optimise beside the model, with zero moments. `parameter` and `gradient` (same element
    /// count) belong to the caller, who adds into `gradient` (the trainer zeroes it before every step).
    public func addSlot(name: String, shape: [Int], parameter: Buffer, gradient: Buffer, learningRateScale: Double = 1,
                        decays: Bool = false) throws {
        guard slotIndex[name] == nil else { throw TrainingError.invalidState("optimizer slot \(name) exists already") }
        guard learningRateScale.isFinite else {
            throw TrainingError.invalidSettings("slot \(name): learning-rate scale \(learningRateScale) is not finite")
        }
        if decays && learningRateScale < 0 {
            throw TrainingError.invalidSettings("slot \(name) ascends (negative learning rate); it cannot decay")
        }
        let count = shape.reduce(1, *)
        guard count >= 1, parameter.count >= count, gradient.count >= count else {
            throw TrainingError.invalidState("slot \(name): buffers smaller than its shape \(shape)")
        }
        setSlots(slots + [OptimizerSlot(
            name: name, shape: shape, parameter: parameter, gradient: gradient, learningRateScale: learningRateScale,
            decays: decays, isModelParameter: false, firstMoment: try backend.zeros(count),
            secondMoment: try backend.zeros(count), mask: nil)])
    }

    /// timm's `param_groups_weight_decay`: decay matrices and convolution kernels (ndim ≥ 2), but not 1-D tensors
    /// (biases, LayerNorm gains and shifts) nor the learned tokens and position embedding, which are 3-D yet act
    /// like biases of the token sequence (`no_weight_decay()` = {pos_embed, cls_token, dist_token}).
    public static func decays(_ spec: ParameterSpec) -> Bool {
        spec.shape.count >= 2 && !["pos_embed", "cls_token", "dist_token"].contains(spec.name)
    }

    /// The weight decay this optimizer applies to a slot (0 or `settings.weightDecay`).
    public func weightDecay(of name: String) throws -> Float {
        try slot(name).decays ? Float(settings.weightDecay) : 0
    }

    /// Zeroes every slot's gradient.
    public func zeroGradients() throws {
        for slot in slots { try backend.fill(slot.gradient, value: 0, offset: 0, count: slot.elementCount) }
    }

    /// One AdamW update of every slot from the gradients currently in the slots' gradient buffers, at the
    /// schedule's `learningRate` times each slot's scale. With `skipWhen`, a slot's update happens on the device only
    /// while that flag is zero (the trainer's non-finite-loss flag).
    public func step(learningRate: Double, skipWhen flag: DeviceFlag? = nil) throws {
        stepCount += 1
        var hyper = AdamWHyperparameters(learningRate: 0, beta1: Float(settings.beta1),
                                         beta2: Float(settings.beta2), eps: Float(settings.eps), weightDecay: 0,
                                         step: stepCount)
        for slot in slots {
            // The model's own slots multiply by exactly 1, so their arithmetic is unchanged.
            hyper.learningRate = slot.learningRateScale == 1 ? Float(learningRate)
                : Float(learningRate * slot.learningRateScale)
            hyper.weightDecay = slot.decays ? Float(settings.weightDecay) : 0
            try backend.adamwStep(param: slot.parameter, grad: slot.gradient, m: slot.firstMoment,
                                  v: slot.secondMoment, mask: slot.mask, count: slot.elementCount, hyper: hyper,
                                  skipWhen: flag)
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
        guard mask.count == slots[index].elementCount else {
            throw TrainingError.invalidState("mask for \(name) has \(mask.count) elements, the parameter has "
                                             + "\(slots[index].elementCount)")
        }
        if let existing = slots[index].mask {
            try backend.write(mask, to: existing)
        } else {
            slots[index].mask = try backend.makeBuffer(mask)
        }
    }

    /// Names of the slots that have an update mask.
    public var maskedParameters: [String] { slots.filter { $0.mask != nil }.map(\.name) }

    // MARK: State (checkpoints, shape changes)

    /// The moments (and mask, if any) of one slot, copied to the host.
    func hostState(_ name: String) throws -> (firstMoment: [Float], secondMoment: [Float], mask: [Float]?) {
        let slot = try slot(name)
        let count = slot.elementCount
        return (try backend.read(slot.firstMoment, count: count), try backend.read(slot.secondMoment, count: count),
                try slot.mask.map { try backend.read($0, count: count) })
    }

    /// Restores one slot's moments exactly as saved.
    func restore(_ name: String, firstMoment: [Float], secondMoment: [Float]) throws {
        let slot = try slot(name)
        guard firstMoment.count == slot.elementCount, secondMoment.count == slot.elementCount else {
            throw TrainingError.invalidState("optimizer moments for \(name) have the wrong size")
        }
        try backend.write(firstMoment, to: slot.firstMoment)
        try backend.write(secondMoment, to: slot.secondMoment)
    }

    /// Moves the model slots onto `model`, a physically smaller copy of the one they were built for: element `i` of
    /// parameter `name` in the new model was element `sources[name][i]` of the old one, and its moments and mask
    /// move with it (Adam's statistics per weight are unchanged by removing other weights). Parameters absent from
    /// `sources` keep their size and state. Extra slots are untouched.
    func reattach(_ model: VisionTransformer, elementSources sources: [String: [Int]]) throws {
        var moved: [String: (m: [Float], v: [Float], mask: [Float]?)] = [:]
        for spec in model.config.parameterSpecs() {
            let old = try hostState(spec.name)
            guard let map = sources[spec.name] else {
                guard old.firstMoment.count == spec.elementCount else {
                    throw TrainingError.invalidState("\(spec.name) changed size without an element map")
                }
                moved[spec.name] = (old.firstMoment, old.secondMoment, old.mask)
                continue
            }
            guard map.count == spec.elementCount,
                  map.allSatisfy({ $0 >= 0 && $0 < old.firstMoment.count }) else {
                throw TrainingError.invalidState("element map of \(spec.name) does not fit its old and new shapes")
            }
            moved[spec.name] = (map.map { old.firstMoment[$0] }, map.map { old.secondMoment[$0] },
                                old.mask.map { mask in map.map { mask[$0] } })
        }
        try attach(model)
        for (name, state) in moved {
            try restore(name, firstMoment: state.m, secondMoment: state.v)
            try setMask(name, state.mask)
        }
    }

    private func index(of name: String) throws -> Int {
        guard let index = slotIndex[name] else { throw TrainingError.invalidState("no optimizer slot \(name)") }
        return index
    }

    func slot(_ name: String) throws -> OptimizerSlot { slots[try index(of: name)] }
}
