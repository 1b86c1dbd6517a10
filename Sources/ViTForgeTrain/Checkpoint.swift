import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeRandom

/// Where a run stands, everything `resume` needs besides tensors. Stored as JSON in the checkpoint's metadata;
/// 64-bit seeds and generator state are decimal strings because JSON numbers are doubles to most readers.
public struct TrainingState: Codable, Equatable, Sendable {
    /// Optimizer steps completed (AdamW's `stepCount`, and the schedule's position).
    public var step = 0
    /// The epoch in progress, 0-based.
    public var epoch = 0
    /// The next batch of `epoch` to train on; equal to `batchesPerEpoch` when the epoch's batches are done but its
    /// evaluation has not run yet.
    public var batchInEpoch = 0
    /// `TrainingRandom`'s four state words.
    public var random: [String] = []
    /// The data source's seed (`TrainingBatches.dataSeed`); resuming with another seed would replay other batches.
    public var dataSeed = "0"
    public var batchesPerEpoch = 0
    /// Running sums of the epoch in progress (float64: a mean over hundreds of batches), loss × images: the part
    /// the host adds up (terms' values, data-parallel steps; all of it in checkpoints from before
    /// `epochDeviceLossSum`), and the cross-entropy/distillation part the device adds up in one process (read back
    /// for each checkpoint; resumed onto the device exactly, so a resumed run's train loss has the same bits).
    public var epochLossSum = 0.0
    public var epochDeviceLossSum: Double?
    /// The same per `TrainingTerm` (nil without terms).
    public var epochTermSums: [String: Double]?
    public var epochImages = 0
    /// Training seconds spent in the epoch so far, over every resumed segment.
    public var epochSeconds = 0.0
    public var history = TrainingHistory()
    /// The JSON state of each `TrainingHook`, by hook name (nil when the run has none).
    public var hooks: [String: String]?

    public init() {}
}

/// What one checkpoint file holds, read back. Tensors: the model's parameters under their timm names (so the file
/// also loads as a model); for every optimizer slot `optimizer.m.<name>` and `optimizer.v.<name>`, and
/// `optimizer.mask.<name>` for masked ones; the values of extra slots (masks, multipliers) as `optimizer.slot.<name>`;
/// hooks' tensors as `hook.<hook>.<key>`. Metadata: `vitforge.config` (the model) and `vitforge.checkpoint`
/// (`Checkpoint.Metadata`, with the hooks' JSON in `state.hooks`).
public struct Checkpoint {
    public static let metadataKey = "vitforge.checkpoint"
    public static let firstMomentPrefix = "optimizer.m."
    public static let secondMomentPrefix = "optimizer.v."
    public static let maskPrefix = "optimizer.mask."
    public static let slotPrefix = "optimizer.slot."
    public static let hookPrefix = "hook."

    /// The JSON under `vitforge.checkpoint`.
    public struct Metadata: Codable, Equatable, Sendable {
        public static let currentVersion = 1
        public var version = Metadata.currentVersion
        public var settings: TrainingSettings
        public var state: TrainingState
        /// The CPU backend's GEMM library the run used (nil on an OpenCL device, and in older checkpoints): a
        /// resume continues on it (`CPUBackend.continueGemm`).
        public var gemm: GemmRecord?
    }

    public var weights: ViTWeights
    /// Per slot name (model parameters and extra slots).
    public var firstMoments: [String: [Float]]
    public var secondMoments: [String: [Float]]
    public var masks: [String: [Float]]
    /// Values of the extra slots, by slot name.
    public var slotValues: [String: [Float]]
    /// Hooks' states by hook name (JSON from `metadata.state.hooks`, tensors from `hook.<name>.<key>`).
    public var hooks: [String: HookState]
    public var metadata: Metadata

    /// Writes model, optimizer (every slot), hooks and state as one safetensors file, atomically (temporary file +
    /// rename), never over any of `protecting` (the run's input model).
    public static func write(model: VisionTransformer, optimizer: AdamW, hooks: [String: HookState] = [:],
                             metadata: Metadata, to path: String, protecting inputs: [String] = []) throws {
        var tensors = try model.hostWeights().namedTensors()
        for slot in optimizer.slots {
            let state = try optimizer.hostState(slot.name)
            if !slot.isModelParameter {
                tensors.append(NamedTensor(name: slotPrefix + slot.name, shape: slot.shape,
                                           floats: try model.backend.read(slot.parameter, count: slot.elementCount)))
            }
            tensors.append(NamedTensor(name: firstMomentPrefix + slot.name, shape: slot.shape,
                                       floats: state.firstMoment))
            tensors.append(NamedTensor(name: secondMomentPrefix + slot.name, shape: slot.shape,
                                       floats: state.secondMoment))
            if let mask = state.mask {
                tensors.append(NamedTensor(name: maskPrefix + slot.name, shape: slot.shape, floats: mask))
            }
        }
        var metadata = metadata
        metadata.state.hooks = hooks.isEmpty ? nil : hooks.mapValues(\.json)
        for (hook, state) in hooks.sorted(by: { $0.key < $1.key }) {
            for (key, values) in state.tensors.sorted(by: { $0.key < $1.key }) {
                tensors.append(NamedTensor(name: hookPrefix + hook + "." + key, shape: [values.count], floats: values))
            }
        }
        // Never replace a good checkpoint with a diverged one: the file on disk stays the last finite state.
        if let bad = NonFiniteCheck.firstNonFinite(tensors) {
            throw TrainingError.nonFinite("\(bad.name) holds \(bad.value) at step \(metadata.state.step): training "
                                          + "diverged; not writing the checkpoint, \(path) keeps the last good one")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let json = String(data: try encoder.encode(metadata), encoding: .utf8) else {
            throw TrainingError.checkpoint(file: path, "metadata cannot be encoded")
        }
        try SafetensorsWriter.write(tensors, metadata: [ViTConfig.metadataKey: model.config.jsonString(),
                                                        metadataKey: json],
                                    to: path, protecting: inputs)
    }

    /// Reads a checkpoint written by `write`; every model parameter must have both moments with its shape.
    public static func read(path: String) throws -> Checkpoint {
        let file = try SafetensorsFile(path: path)
        guard let json = file.metadata[metadataKey] else {
            throw TrainingError.checkpoint(file: path, "no \(metadataKey) metadata: not a ViTForge training checkpoint")
        }
        let metadata: Metadata
        do {
            metadata = try JSONDecoder().decode(Metadata.self, from: Data(json.utf8))
        } catch {
            throw TrainingError.checkpoint(file: path, "\(metadataKey) metadata cannot be read")
        }
        guard metadata.version == Metadata.currentVersion else {
            throw TrainingError.checkpoint(file: path, "checkpoint version \(metadata.version) "
                                           + "(this build reads \(Metadata.currentVersion))")
        }
        let weights = try ViTWeights(file: file, allowExtraTensors: true)
        for spec in weights.config.parameterSpecs() {
            for prefix in [firstMomentPrefix, secondMomentPrefix] {
                let name = prefix + spec.name
                guard let entry = file.entry(name) else { throw ModelFileError(file: path, key: name, .missingKey) }
                guard entry.shape == spec.shape else {
                    throw ModelFileError(file: path, key: name, .wrongShape(expected: spec.shape, actual: entry.shape))
                }
            }
        }
        var firstMoments: [String: [Float]] = [:], secondMoments: [String: [Float]] = [:]
        var masks: [String: [Float]] = [:], slotValues: [String: [Float]] = [:]
        var hooks = (metadata.state.hooks ?? [:]).mapValues { HookState(json: $0) }
        for name in file.names {
            func suffix(_ prefix: String) -> String? { name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : nil }
            if let slot = suffix(firstMomentPrefix) {
                firstMoments[slot] = try file.floats(name)
            } else if let slot = suffix(secondMomentPrefix) {
                secondMoments[slot] = try file.floats(name)
            } else if let slot = suffix(maskPrefix) {
                masks[slot] = try file.floats(name)
            } else if let slot = suffix(slotPrefix) {
                slotValues[slot] = try file.floats(name)
            } else if let rest = suffix(hookPrefix), let dot = rest.firstIndex(of: ".") {
                hooks[String(rest[..<dot]), default: HookState()].tensors[String(rest[rest.index(after: dot)...])]
                    = try file.floats(name)
            }
        }
        return Checkpoint(weights: weights, firstMoments: firstMoments, secondMoments: secondMoments, masks: masks,
                          slotValues: slotValues, hooks: hooks, metadata: metadata)
    }
}

/// The run's own generator (xoshiro256**, seeded through SplitMix64), saved in every checkpoint so that anything
/// random the trainer or a regulariser draws continues identically after a resume. Batches do not use it: they are
/// a pure function of (data seed, epoch, index), which is what lets a resume seek.
public struct TrainingRandom: RandomNumberGenerator, Equatable, Sendable {
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var mixer = SplitMix64(seed: seed)
        state = (mixer.next(), mixer.next(), mixer.next(), mixer.next())
    }

    /// The state from `words` (as saved); nil unless four decimal UInt64s, not all zero.
    public init?(words: [String]) {
        let values = words.compactMap { UInt64($0) }
        guard words.count == 4, values.count == 4, values.contains(where: { $0 != 0 }) else { return nil }
        state = (values[0], values[1], values[2], values[3])
    }

    public var words: [String] { [state.0, state.1, state.2, state.3].map { String($0) } }

    public mutating func next() -> UInt64 {
        let result = rotate(state.1 &* 5, 7) &* 9
        let shifted = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= shifted
        state.3 = rotate(state.3, 45)
        return result
    }

    private func rotate(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public static func == (lhs: TrainingRandom, rhs: TrainingRandom) -> Bool { lhs.words == rhs.words }
}
