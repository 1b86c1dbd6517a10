import Foundation
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeRandom

/// `../shared/fixtures` relative to the repository root (the DeiT-Tiny files stay outside the repository).
let sharedFixturesFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/fixtures")

let deitTinyPath = sharedFixturesFolder.appendingPathComponent("deit_tiny_patch16_224.safetensors").path
let deitTinyPresent = FileManager.default.fileExists(atPath: deitTinyPath)

/// A safetensors file assembled by hand: `declaredLength` overrides the 8-byte header length.
func rawSafetensors(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> Data {
    let headerBytes = Array(header.utf8)
    var bytes = withUnsafeBytes(of: (declaredLength ?? UInt64(headerBytes.count)).littleEndian) { Array($0) }
    bytes += headerBytes
    bytes += data
    return Data(bytes)
}

/// The error `body` throws as a `ModelFileError`, or nil when it throws nothing or something else.
func modelFileError(_ body: () throws -> Void) -> ModelFileError? {
    do {
        try body()
        return nil
    } catch let error as ModelFileError {
        return error
    } catch {
        return nil
    }
}

/// Deterministic values for test tensors (SplitMix64), so failures reproduce.
struct SeededValues {
    private var stream: SplitMix64

    init(seed: UInt64) { stream = SplitMix64(seed: seed) }

    /// Uniform in [-1, 1), 24 random bits: exact in a Float.
    mutating func next() -> Float {
        Float(stream.next() >> 40) / Float(1 << 24) * 2 - 1
    }

    mutating func tensors(for config: ViTConfig) -> [String: HostTensor] {
        var tensors: [String: HostTensor] = [:]
        for spec in config.parameterSpecs() {
            tensors[spec.name] = HostTensor(shape: spec.shape, values: (0..<spec.elementCount).map { _ in next() })
        }
        return tensors
    }
}

/// A small pruned-shape model: odd sizes, per-block heads, q/k ≠ v, MLP widths and a custom attention scale.
func prunedConfig(distilled: Bool = false) -> ViTConfig {
    ViTConfig(imageSize: 15, patchSize: 5, inChannels: 2, classes: 7, residualWidth: 13,
              blocks: [
                  BlockConfig(heads: 3, qkDim: 5, vDim: 7, mlpHidden: 37, attentionScale: 0.3),
                  // Pruned from 8-wide heads: keeps the original 8^-0.5.
                  BlockConfig(heads: 1, qkDim: 4, vDim: 2, mlpHidden: 11, attentionScale: 1 / 8.0.squareRoot()),
                  BlockConfig(heads: 2, qkDim: 3, vDim: 3, mlpHidden: 19),
              ],
              qkvBias: !distilled, pooling: distilled ? .token : .avg, classToken: true,
              distillationToken: distilled)
}
