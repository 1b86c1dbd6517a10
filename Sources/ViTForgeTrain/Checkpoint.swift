import Foundation
import ViTForgeDevice
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
    /// Running sums of the epoch in progress (float64: a mean over hundreds of batches).
    public var epochLossSum = 0.0
    public var epochImages = 0
    /// Training seconds spent in the epoch so far, over every resumed segment.
    public var epochSeconds = 0.0
    public var history = TrainingHistory()

    public init() {}
}

/// What one checkpoint file holds, read back. Tensors: the model's parameters under their timm names (so the file
/// also loads as a model), `optimizer.m.<name>` and `optimizer.v.<name>` for every parameter, `optimizer.mask.<name>`
/// for masked ones. Metadata: `vitforge.config` (the model) and `vitforge.checkpoint` (`CheckpointMetadata`).
public struct Checkpoint {
    public static let metadataKey = "vitforge.checkpoint"
    public static let firstMomentPrefix = "optimizer.m."
    public static let secondMomentPrefix = "optimizer.v."
    public static let maskPrefix = "optimizer.mask."

    /// The JSON under `vitforge.checkpoint`.
    public struct Metadata: Codable, Equatable, Sendable {
        public static let currentVersion = 1
        public var version = Metadata.currentVersion
        public var settings: TrainingSettings
        public var state: TrainingState
    }

    public var weights: ViTWeights
    public var firstMoments: [String: [Float]]
    public var secondMoments: [String: [Float]]
    public var masks: [String: [Float]]
    public var metadata: Metadata

    /// Writes model, optimizer and state as one safetensors file, atomically (temporary file + rename), never over
    /// any of `protecting` (the run's input model).
    public static func write(model: VisionTransformer, optimizer: AdamW, metadata: Metadata, to path: String,
                             protecting inputs: [String] = []) throws {
        var tensors = try model.hostWeights().namedTensors()
        for spec in model.config.parameterSpecs() {
            let state = try optimizer.hostState(spec.name)
            tensors.append(NamedTensor(name: firstMomentPrefix + spec.name, shape: spec.shape,
                                       floats: state.firstMoment))
            tensors.append(NamedTensor(name: secondMomentPrefix + spec.name, shape: spec.shape,
                                       floats: state.secondMoment))
            if let mask = state.mask {
                tensors.append(NamedTensor(name: maskPrefix + spec.name, shape: spec.shape, floats: mask))
            }
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

    /// Reads a checkpoint written by `write`; every parameter must have both moments with its shape.
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
        var firstMoments: [String: [Float]] = [:]
        var secondMoments: [String: [Float]] = [:]
        var masks: [String: [Float]] = [:]
        for spec in weights.config.parameterSpecs() {
            for prefix in [firstMomentPrefix, secondMomentPrefix, maskPrefix] {
                let name = prefix + spec.name
                guard let entry = file.entry(name) else {
                    if prefix == maskPrefix { continue }
                    throw ModelFileError(file: path, key: name, .missingKey)
                }
                guard entry.shape == spec.shape else {
                    throw ModelFileError(file: path, key: name, .wrongShape(expected: spec.shape, actual: entry.shape))
                }
                let values = try file.floats(name)
                switch prefix {
                case firstMomentPrefix: firstMoments[spec.name] = values
                case secondMomentPrefix: secondMoments[spec.name] = values
                default: masks[spec.name] = values
                }
            }
        }
        return Checkpoint(weights: weights, firstMoments: firstMoments, secondMoments: secondMoments, masks: masks,
                          metadata: metadata)
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
