import Foundation
import FuzzDriver
import ViTForgeFormats

// One input = one safetensors file. Everything a command does with a model file before computing runs: validation,
// every tensor converted, `vitforge.config` decoded and checked against the tensors, the weights assembled (also
// with an explicit --heads, the path of plain timm checkpoints). A thrown error is the expected outcome for bad
// input; a crash, a sanitizer report, a timeout or an allocation past the memory limit is a finding.
runFuzzer { start, count in
    let bytes = Data(buffer: fuzzBytes(start, count))
    guard let file = try? SafetensorsFile(bytes: bytes, path: "fuzz.safetensors") else { return 0 }
    for entry in file.entries {
        _ = try? file.floats(entry.name)
        _ = try? file.int32s(entry.name)
    }
    if let json = file.metadata[ViTConfig.metadataKey] {
        _ = try? ViTConfig.fromJSON(json, file: file.path)
    }
    _ = try? ViTWeights(file: file)
    _ = try? ViTWeights(file: file, heads: 2, allowExtraTensors: true)
    return 0
}
