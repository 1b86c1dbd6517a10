import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics

/// One malformed input: how to make its bytes, the error it must give, and the tensor the error must name.
struct BadInput: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: @Sendable () throws -> Data
    var key: String?
    var heads: Int? = 2
    var matches: @Sendable (ModelFileError.Reason) -> Bool

    var testDescription: String { name }
}

/// Fixture fm-vit-c's tensors, edited and written back with the writer (so only the edit is wrong).
func editedFixture(metadata: [String: String] = [:], _ edit: (inout [NamedTensor]) -> Void) throws -> Data {
    let weights = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2)
    var tensors = weights.namedTensors()
    edit(&tensors)
    let folder = try TemporaryFolder()
    defer { folder.remove() }
    let path = folder.path("edited.safetensors")
    try SafetensorsWriter.write(tensors, metadata: metadata, to: path)
    return try Data(contentsOf: URL(fileURLWithPath: path))
}

let eightBytes: [UInt8] = Array(repeating: 0, count: 8)

let badInputs: [BadInput] = [
    BadInput(name: "shorter than the length prefix", bytes: { Data([1, 2, 3]) }, key: nil) {
        $0 == .truncated(fileLength: 3)
    },
    BadInput(name: "truncated in the data", bytes: {
        let whole = try Data(contentsOf: URL(fileURLWithPath: fixture("fm-vit-c.safetensors")))
        return whole.prefix(whole.count / 2)
    }, key: "blocks.2.attn.proj.weight") {
        if case .offsetsOutsideBuffer = $0 { return true } else { return false }
    },
    BadInput(name: "header length past the end", bytes: {
        rawSafetensors(header: "{}", declaredLength: 1000)
    }, key: nil) { $0 == .headerPastEnd(headerLength: 1000, fileLength: 10) },
    BadInput(name: "header length over 100 MB", bytes: {
        rawSafetensors(header: "{}", declaredLength: 100_000_001)
    }, key: nil) { if case .headerTooLarge = $0 { return true } else { return false } },
    BadInput(name: "invalid JSON", bytes: {
        rawSafetensors(header: "{\"a\": {\"dtype\": \"F32\", ")
    }, key: nil) { if case .invalidJSON = $0 { return true } else { return false } },
    BadInput(name: "garbage after the JSON", bytes: {
        rawSafetensors(header: "{} x")
    }, key: nil) { if case .invalidJSON = $0 { return true } else { return false } },
    BadInput(name: "header not starting with {", bytes: {
        rawSafetensors(header: " {}")
    }, key: nil) { $0 == .headerNotObject },
    BadInput(name: "duplicate key", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}
            """, data: eightBytes)
    }, key: "a") { $0 == .duplicateKey },
    BadInput(name: "offsets overlapping", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}
            """, data: eightBytes + [0, 0, 0, 0])
    }, key: "b") { $0 == .offsetsOverlap(previous: "a") },
    BadInput(name: "offsets outside the buffer", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}
            """, data: [0, 0, 0, 0])
    }, key: "a") { $0 == .offsetsOutsideBuffer(begin: 0, end: 8, bufferLength: 4) },
    BadInput(name: "hole between tensors", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}
            """, data: eightBytes + [0, 0, 0, 0])
    }, key: "b") { $0 == .hole(previous: "a", bytes: 4) },
    BadInput(name: "data not starting at offset 0", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}
            """, data: eightBytes)
    }, key: "a") { $0 == .hole(previous: nil, bytes: 4) },
    BadInput(name: "bytes after the last tensor", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}
            """, data: eightBytes)
    }, key: nil) { $0 == .trailingBytes(4) },
    BadInput(name: "size not numel × dtype size", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}
            """, data: eightBytes)
    }, key: "a") { $0 == .sizeMismatch(expectedBytes: 12, actualBytes: 8) },
    BadInput(name: "element count overflowing 64 bits", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[4611686018427387904,8,3],"data_offsets":[0,8]}}
            """, data: eightBytes)
    }, key: "a") { $0 == .sizeMismatch(expectedBytes: UInt64.max, actualBytes: 8) },
    BadInput(name: "unknown dtype", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}}
            """, data: eightBytes)
    }, key: "a") { $0 == .unknownDtype("F99") },
    BadInput(name: "negative shape", bytes: {
        rawSafetensors(header: """
            {"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}
            """, data: eightBytes)
    }, key: "a") { if case .invalidEntry = $0 { return true } else { return false } },
    BadInput(name: "metadata that is not a string map", bytes: {
        rawSafetensors(header: """
            {"__metadata__":{"format":1}}
            """)
    }, key: nil) { if case .invalidEntry = $0 { return true } else { return false } },
    BadInput(name: "pickle (.pth)", bytes: {
        Data([0x80, 0x02, 0x7D, 0x71, 0x00, 0x2E] + Array(repeating: 0, count: 20))
    }, key: nil) { if case .pickle(zip: false, _) = $0 { return true } else { return false } },
    BadInput(name: "torch zip checkpoint", bytes: {
        Data([0x50, 0x4B, 0x03, 0x04] + Array(repeating: 0, count: 40))
    }, key: nil) { if case .pickle(zip: true, _) = $0 { return true } else { return false } },
    BadInput(name: "missing key", bytes: {
        try editedFixture { $0.removeAll { $0.name == "blocks.2.mlp.fc2.bias" } }
    }, key: "blocks.2.mlp.fc2.bias") { $0 == .missingKey },
    BadInput(name: "wrong shape (stored config)", bytes: {
        let config = try ViTWeights.load(path: fixture("fm-vit-c.safetensors"), heads: 2).config
        return try editedFixture(metadata: [ViTConfig.metadataKey: config.jsonString()]) { tensors in
            guard let index = tensors.firstIndex(where: { $0.name == "blocks.3.mlp.fc1.weight" }) else { return }
            tensors[index] = NamedTensor(name: "blocks.3.mlp.fc1.weight", shape: [200, 96],
                                         floats: Array(repeating: 0, count: 200 * 96))
        }
    }, key: "blocks.3.mlp.fc1.weight", heads: nil) { $0 == .wrongShape(expected: [384, 96], actual: [200, 96]) },
    BadInput(name: "wrong shape (inferred config)", bytes: {
        try editedFixture { tensors in
            guard let index = tensors.firstIndex(where: { $0.name == "blocks.1.norm2.weight" }) else { return }
            tensors[index] = NamedTensor(name: "blocks.1.norm2.weight", shape: [95], floats: Array(repeating: 1, count: 95))
        }
    }, key: "blocks.1.norm2.weight") { $0 == .wrongShape(expected: [96], actual: [95]) },
    BadInput(name: "unexpected tensor", bytes: {
        try editedFixture { $0.append(NamedTensor(name: "blocks.0.attn.extra", shape: [1], floats: [0])) }
    }, key: "blocks.0.attn.extra") { $0 == .unexpectedKey },
    BadInput(name: "LayerScale variant", bytes: {
        try editedFixture { $0.append(NamedTensor(name: "blocks.0.ls1.gamma", shape: [96], floats: Array(repeating: 1, count: 96))) }
    }, key: "blocks.0.ls1.gamma") { if case .unsupportedVariant = $0 { return true } else { return false } },
    BadInput(name: "Hugging Face layout", bytes: {
        try editedFixture { tensors in
            tensors = tensors.map { NamedTensor(name: "vit.encoder.layer." + $0.name, shape: $0.shape, values: $0.values) }
        }
    }, key: nil) { if case .unsupportedVariant = $0 { return true } else { return false } },
    BadInput(name: "huge zero-byte shape", bytes: {
        rawSafetensors(header: """
            {"patch_embed.proj.weight":{"dtype":"F32","shape":[1099511627776,0,16,16],"data_offsets":[0,0]}}
            """)
    }, key: "patch_embed.proj.weight") { if case .invalidConfig = $0 { return true } else { return false } },
    BadInput(name: "huge stored config", bytes: {
        var config = prunedConfig()
        config.residualWidth = 1 << 40
        return try editedFixture(metadata: [ViTConfig.metadataKey: config.jsonString()]) { _ in }
    }, key: nil, heads: nil) { if case .invalidConfig = $0 { return true } else { return false } },
    BadInput(name: "invalid stored config", bytes: {
        try editedFixture(metadata: [ViTConfig.metadataKey: "{\"imageSize\": 28}"]) { _ in }
    }, key: nil) { if case .invalidConfig = $0 { return true } else { return false } },
]

struct BadInputTests {
    /// Each bad file fails to load with one line naming the file (and the tensor), and converting it (load, then
    /// save elsewhere) writes nothing.
    @Test(arguments: badInputs)
    func failsCleanly(_ input: BadInput) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("bad.safetensors")
        try input.bytes().write(to: URL(fileURLWithPath: path))

        let error = modelFileError {
            let weights = try ViTWeights.load(path: path, heads: input.heads)
            try weights.save(to: folder.path("out.safetensors"))
        }
        let found = try #require(error, "no ModelFileError for \(input.name)")
        #expect(input.matches(found.reason), "\(found)")
        #expect(found.file == path)
        if let key = input.key { #expect(found.key == key, "\(found)") }
        let line = found.description
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix(path + ": "))
        if let key = input.key { #expect(line.contains(quoted(key))) }
        #expect(try folder.contents() == ["bad.safetensors"])
    }

    @Test func wrongShapeNamesBothShapes() throws {
        let error = ModelFileError(file: "fm.safetensors", key: "blocks.3.mlp.fc1.weight",
                                   .wrongShape(expected: [768, 192], actual: [384, 192]))
        #expect(error.description
            == "fm.safetensors: tensor \"blocks.3.mlp.fc1.weight\": shape [768, 192] expected, file has [384, 192]")
    }

    @Test func pickleRefusalSaysWhyAndHowToConvert() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("deit.pth")
        try Data([0x80, 0x04, 0x95]).write(to: URL(fileURLWithPath: path))
        let line = try #require(modelFileError { _ = try SafetensorsFile(path: path) }).description
        #expect(line.contains("execute arbitrary code"))
        #expect(line.contains("safetensors.torch"))
        #expect(line.contains("save_file"))
        #expect(line.contains(folder.path("deit.safetensors")))
        #expect(!line.contains("\n"))
        // A pickle misnamed .safetensors: the suggested output must not be the input itself.
        let misnamed = folder.path("model.safetensors")
        try Data([0x80, 0x04, 0x95]).write(to: URL(fileURLWithPath: misnamed))
        let misnamedLine = try #require(modelFileError { _ = try SafetensorsFile(path: misnamed) }).description
        #expect(misnamedLine.contains(folder.path("model.converted.safetensors")))
    }

    @Test func missingFileIsOneLine() {
        let error = modelFileError { _ = try SafetensorsFile(path: "/nonexistent/model.safetensors") }
        #expect(error?.description.hasPrefix("/nonexistent/model.safetensors: ") == true)
        #expect(error?.description.contains("\n") == false)
    }
}
