import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel
import ViTForgeTestBasics

struct RoundTripTests {
    @Test(arguments: [false, true])
    func prunedShapeModelRoundTrips(distilled: Bool) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let config = prunedConfig(distilled: distilled)
        var values = SeededValues(seed: distilled ? 7 : 13)
        let weights = try ViTWeights(config: config, tensors: values.tensors(for: config))
        #expect(!config.isPlainTimm)

        let path = folder.path("pruned.safetensors")
        try weights.save(to: path, metadata: ["note": "round trip"])
        let read = try ViTWeights.load(path: path)
        #expect(read == weights)
        #expect(read.headsSource == .metadata)
        #expect(read.config.blocks[0].attentionScale == 0.3)
        #expect(read.config.blocks[1].attentionScale == 1 / 8.0.squareRoot())
        #expect(read.config.blocks.map(\.heads) == [3, 1, 2])

        let file = try SafetensorsFile(path: path)
        #expect(file.metadata["format"] == "pt")
        #expect(file.metadata["note"] == "round trip")
        // qkv rows are q (H·qk) | k (H·qk) | v (H·v): block 0 has 3·(5+5+7) rows.
        #expect(try file.shape("blocks.0.attn.qkv.weight") == [51, 13])
        #expect(try file.shape("blocks.0.attn.proj.weight") == [13, 21])

        // Same weights, same bytes: the layout and the metadata order are deterministic.
        let again = folder.path("again.safetensors")
        try read.save(to: again, metadata: ["note": "round trip"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(contentsOf: URL(fileURLWithPath: again)))
        #expect(try folder.contents() == ["again.safetensors", "pruned.safetensors"])

        // A stored config and a different --heads cannot both be right.
        let conflict = modelFileError { _ = try ViTWeights.load(path: path, heads: 2) }
        #expect(conflict?.key == ViTConfig.metadataKey)
    }

    @Test func timmFixtureRoundTripsAndStaysLoadableByShape() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let original = try SafetensorsFile(path: fixture("fm-vit-c.safetensors"))
        let weights = try ViTWeights(file: original, heads: 2)
        let path = folder.path("fm-vit-c.safetensors")
        try weights.save(to: path)

        let written = try SafetensorsFile(path: path)
        for name in original.names {
            #expect(try written.floats(name) == original.floats(name), "\(name)")
            #expect(written.entry(name)?.shape == original.entry(name)?.shape)
        }
        #expect(Set(written.names) == Set(original.names))
        let headerLength = try Data(contentsOf: URL(fileURLWithPath: path)).prefix(8)
            .withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(headerLength % 8 == 0)
        // The stored config agrees with inference, so timm-shaped files read the same either way.
        #expect(try ViTWeights.load(path: path).config == weights.config)
        #expect(try ViTWeights.load(path: path, heads: 2) == weights)
    }

    @Test func savingOverTheInputIsRefused() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let input = folder.path("model.safetensors")
        try FileManager.default.copyItem(atPath: fixture("fm-vit-c.safetensors"), toPath: input)
        let before = try Data(contentsOf: URL(fileURLWithPath: input))
        let weights = try ViTWeights.load(path: input, heads: 2)

        let error = modelFileError { try weights.save(to: input) }
        #expect(error?.reason == .wouldOverwriteInput)
        // Through a symbolic link it is still the same file.
        let link = folder.path("link.safetensors")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: input)
        #expect(modelFileError { try weights.save(to: link) }?.reason == .wouldOverwriteInput)
        #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == before)
        #expect(try folder.contents() == ["link.safetensors", "model.safetensors"])

        // Any other existing output is replaced.
        let output = folder.path("out.safetensors")
        try Data("old".utf8).write(to: URL(fileURLWithPath: output))
        try weights.save(to: output)
        #expect(try ViTWeights.load(path: output) == weights)
    }

    @Test func failedWriteLeavesNothing() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let bad = NamedTensor(name: "x", shape: [2, 3], floats: [1, 2, 3])
        let error = modelFileError { try SafetensorsWriter.write([bad], to: folder.path("x.safetensors")) }
        #expect(error?.key == "x")
        let missingFolder = modelFileError {
            try SafetensorsWriter.write([], to: folder.path("no-such-folder/x.safetensors"))
        }
        #expect(missingFolder != nil)
        #expect(try folder.contents() == [])
    }

    @Test func everyReadableDtypeConverts() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), +inf. BF16: 1, -3.5. F64: 0.1, -1e300 (→ -inf).
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00]
        let bf16: [UInt16] = [0x3F80, 0xC060]
        let f64: [Double] = [0.1, -1e300]
        let i32: [Int32] = [-5, 2_000_000_000]
        let i64: [Int64] = [9, -1]
        var data: [UInt8] = []
        func append<T>(_ values: [T]) { values.withUnsafeBytes { data += $0 } }
        append(f64); append(i64); append(i32); append(f16); append(bf16)
        // Offsets deliberately in the header out of data order: order in the JSON does not matter.
        let header = """
            {"h":{"dtype":"F16","shape":[5],"data_offsets":[40,50]},\
            "d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},\
            "__metadata__":{"format":"pt"},\
            "l":{"dtype":"I64","shape":[2],"data_offsets":[16,32]},\
            "i":{"dtype":"I32","shape":[2],"data_offsets":[32,40]},\
            "b":{"dtype":"BF16","shape":[1,2],"data_offsets":[50,54]},\
            "scalar":{"dtype":"F32","shape":[],"data_offsets":[54,58]},\
            "empty":{"dtype":"F32","shape":[0,4],"data_offsets":[58,58]}}\("    ")
            """
        append([Float(42)])
        let path = folder.path("dtypes.safetensors")
        try rawSafetensors(header: header, data: data).write(to: URL(fileURLWithPath: path))

        let file = try SafetensorsFile(path: path)
        #expect(try file.floats("h") == [1, -2, 65504, 0x1p-24, .infinity])
        #expect(try file.floats("b") == [1, -3.5])
        #expect(try file.floats("d") == [Float(0.1), -.infinity])
        #expect(try file.int64s("i") == [-5, 2_000_000_000])
        #expect(try file.int64s("l") == [9, -1])
        #expect(try file.floats("scalar") == [42])
        #expect(try file.floats("empty") == [])
        #expect(try file.shape("scalar") == [])
        #expect(file.names == ["d", "l", "i", "h", "b", "scalar", "empty"])
        #expect(modelFileError { _ = try file.floats("i") }?.reason == .wrongDtype("I32", wanted: "float"))
        #expect(modelFileError { _ = try file.int64s("h") }?.reason == .wrongDtype("F16", wanted: "integers"))
        #expect(modelFileError { _ = try file.floats("nope") }?.reason == .missingKey)
    }

    @Test func writerLayoutFollowsTheReference() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let path = folder.path("layout.safetensors")
        try SafetensorsWriter.write([
            NamedTensor(name: "b", shape: [3], floats: [1, 2, 3]),
            NamedTensor(name: "labels", shape: [2], values: .int64([4, 5])),
            NamedTensor(name: "a", shape: [1], floats: [7]),
            NamedTensor(name: "weird \"name\"\n", shape: [], values: .float64([0.5])),
        ], metadata: ["format": "tf", "z": "ü \"quoted\""], to: path)
        let file = try SafetensorsFile(path: path)
        // 8-byte elements first, then by name; the format key is always "pt".
        #expect(file.names == ["labels", "weird \"name\"\n", "a", "b"])
        #expect(file.metadata == ["format": "pt", "z": "ü \"quoted\""])
        #expect(try file.int64s("labels") == [4, 5])
        #expect(try file.floats("weird \"name\"\n") == [0.5])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(headerLength % 8 == 0)
        #expect(bytes[8] == UInt8(ascii: "{"))
    }
}
