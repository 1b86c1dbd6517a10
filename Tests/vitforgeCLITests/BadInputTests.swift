import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// Every malformed input ends as exactly one `error: …` line on stderr naming the file, a non-zero exit, and no
/// output file.
@Suite(.serialized)
struct BadInputTests {
    /// A bad input: the files it needs (written into the test's folder) and what the one error line must contain.
    struct Case: CustomStringConvertible, Sendable {
        let description: String
        /// Writes the case's files into the folder; returns the command's arguments (with `OUT` for the output
        /// path) and the substrings the error line must hold.
        let make: @Sendable (TemporaryFolder) throws -> (arguments: [String], expected: [String])
    }

    static let model = fixture("fm-vit-c.safetensors")
    static let reference = fixture("fm-vit-c-ref.safetensors")

    /// `infer` on a broken model file, the reference input otherwise good.
    static func inferWithModel(_ path: String) -> [String] {
        ["infer", "--model", path, "--heads", "2", "--input", reference, "--out", "OUT", "--device", "cpu"]
    }

    /// The fixture model's tensors, changed by `edit`, written as a valid safetensors file.
    static func editedModel(_ folder: TemporaryFolder, _ edit: (inout [NamedTensor]) -> Void) throws -> String {
        let file = try SafetensorsFile(path: model)
        var tensors = try file.names.map { NamedTensor(name: $0, shape: try file.shape($0), floats: try file.floats($0)) }
        edit(&tensors)
        let path = folder.path("edited.safetensors")
        try SafetensorsWriter.write(tensors, to: path)
        return path
    }

    /// An IDX file of unsigned bytes: magic, big-endian dimensions, then `payload` bytes of zeros.
    static func idx(magic: UInt32, dimensions: [UInt32], payload: Int) -> [UInt8] {
        func bigEndian(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
        return bigEndian(magic) + dimensions.flatMap(bigEndian) + [UInt8](repeating: 0, count: payload)
    }

    /// `eval` on an IDX folder holding the given test-split files.
    static func evalFolder(_ folder: TemporaryFolder, images: [UInt8], labels: [UInt8]) throws -> [String] {
        let data = folder.path("idx")
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try Data(images).write(to: URL(fileURLWithPath: data + "/t10k-images-idx3-ubyte"))
        try Data(labels).write(to: URL(fileURLWithPath: data + "/t10k-labels-idx1-ubyte"))
        return ["eval", "--model", model, "--heads", "2", "--data", data, "--json", "OUT", "--device", "cpu"]
    }

    static let cases: [Case] = [
        Case(description: "model shorter than the 8-byte header length") { folder in
            let path = try folder.write("short.safetensors", [1, 2, 3, 4, 5])
            return (inferWithModel(path), [path, "truncated"])
        },
        Case(description: "model truncated inside the data") { folder in
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: model)))
            let path = try folder.write("cut.safetensors", Array(bytes.dropLast(1000)))
            return (inferWithModel(path), [path, "outside"])
        },
        Case(description: "header length past the end of the file") { folder in
            let path = try folder.write("past.safetensors",
                                        withUnsafeBytes(of: UInt64(5000).littleEndian) { Array($0) } + Array("{}".utf8))
            return (inferWithModel(path), [path, "past the end"])
        },
        Case(description: "header that is not valid JSON") { folder in
            let path = try folder.write("json.safetensors", rawSafetensors(header: "{\"a\": [1, 2", dataBytes: 0))
            return (inferWithModel(path), [path, "not valid JSON"])
        },
        Case(description: "overlapping data offsets") { folder in
            let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"#
                + #""b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
            let path = try folder.write("overlap.safetensors", rawSafetensors(header: header, dataBytes: 24))
            return (inferWithModel(path), [path, "overlap"])
        },
        Case(description: "unknown dtype") { folder in
            let header = #"{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}"#
            let path = try folder.write("dtype.safetensors", rawSafetensors(header: header, dataBytes: 4))
            return (inferWithModel(path), [path, "unknown dtype", "F7"])
        },
        Case(description: "missing parameter") { folder in
            let path = try editedModel(folder) { $0.removeAll { $0.name == "blocks.1.mlp.fc2.bias" } }
            return (inferWithModel(path), [path, "blocks.1.mlp.fc2.bias", "missing"])
        },
        Case(description: "parameter of the wrong shape names both shapes") { folder in
            let path = try editedModel(folder) { tensors in
                if let index = tensors.firstIndex(where: { $0.name == "blocks.2.mlp.fc1.bias" }) {
                    tensors[index] = NamedTensor(name: "blocks.2.mlp.fc1.bias", shape: [383],
                                                 floats: [Float](repeating: 0, count: 383))
                }
            }
            return (inferWithModel(path), [path, "blocks.2.mlp.fc1.bias", "[384]", "[383]"])
        },
        Case(description: "pickle .pth refused, saying why") { folder in
            let path = try folder.write("model.pth", [0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e, 0, 0, 0, 0])
            return (inferWithModel(path), [path, "refused", "pickle"])
        },
        Case(description: "torch zip checkpoint refused") { folder in
            let path = try folder.write("model.pt", Array("PK\u{3}\u{4}rest-of-zip".utf8))
            return (inferWithModel(path), [path, "refused"])
        },
        Case(description: "input tensor of the wrong shape names both shapes") { folder in
            let path = folder.path("input.safetensors")
            try SafetensorsWriter.write([NamedTensor(name: "input", shape: [2, 1, 27, 27],
                                                     floats: [Float](repeating: 0, count: 2 * 27 * 27))], to: path)
            return (["infer", "--model", model, "--heads", "2", "--input", path, "--out", "OUT", "--device", "cpu"],
                    [path, "\"input\"", "[2, 1, 28, 28]", "[2, 1, 27, 27]"])
        },
        Case(description: "input file without the input tensor") { folder in
            let path = folder.path("noinput.safetensors")
            try SafetensorsWriter.write([NamedTensor(name: "x", shape: [1], floats: [0])], to: path)
            return (["infer", "--model", model, "--heads", "2", "--input", path, "--out", "OUT", "--device", "cpu"],
                    [path, "\"input\"", "missing"])
        },
        Case(description: "grad with labels of the wrong count") { folder in
            let path = folder.path("labels.safetensors")
            try SafetensorsWriter.write([
                NamedTensor(name: "input", shape: [2, 1, 28, 28], floats: [Float](repeating: 0, count: 2 * 784)),
                NamedTensor(name: "labels", shape: [3], values: .int64([1, 2, 3])),
            ], to: path)
            return (["grad", "--model", model, "--heads", "2", "--input", path, "--out", "OUT", "--device", "cpu"],
                    [path, "\"labels\"", "[2]", "[3]"])
        },
        Case(description: "grad with a label outside the model's classes") { folder in
            let path = folder.path("labels.safetensors")
            try SafetensorsWriter.write([
                NamedTensor(name: "input", shape: [1, 1, 28, 28], floats: [Float](repeating: 0, count: 784)),
                NamedTensor(name: "labels", shape: [1], values: .int32([10])),
            ], to: path)
            return (["grad", "--model", model, "--heads", "2", "--input", path, "--out", "OUT", "--device", "cpu"],
                    [path, "label 10"])
        },
        Case(description: "unknown --device") { _ in
            (["infer", "--model", model, "--heads", "2", "--input", reference, "--out", "OUT", "--device", "bogus"],
             ["bogus"])
        },
        Case(description: "IDX images file with a labels file's magic") { folder in
            let arguments = try evalFolder(folder, images: idx(magic: 0x801, dimensions: [3], payload: 3),
                                           labels: idx(magic: 0x801, dimensions: [3], payload: 3))
            return (arguments, ["t10k-images-idx3-ubyte", "magic 0x00000801", "0x00000803"])
        },
        Case(description: "IDX label count differs from the image count") { folder in
            let arguments = try evalFolder(folder, images: idx(magic: 0x803, dimensions: [3, 28, 28], payload: 3 * 784),
                                           labels: idx(magic: 0x801, dimensions: [2], payload: 2))
            return (arguments, ["t10k-labels-idx1-ubyte", "2 labels", "3 images"])
        },
        Case(description: "IDX images file shorter than its header says") { folder in
            let arguments = try evalFolder(folder, images: idx(magic: 0x803, dimensions: [3, 28, 28], payload: 100),
                                           labels: idx(magic: 0x801, dimensions: [3], payload: 3))
            return (arguments, ["t10k-images-idx3-ubyte", "truncated"])
        },
    ]

    @Test("bad input: one stderr line naming the file, non-zero exit, nothing written", arguments: cases)
    func failsCleanly(_ badCase: Case) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let out = folder.path("out-file")
        let (template, expected) = try badCase.make(folder)
        let result = try vitforge(template.map { $0 == "OUT" ? out : $0 })
        #expect(result.status != 0)
        #expect(result.stderrLines.count == 1, "stderr: \(result.stderr)")
        let line = String(result.stderrLines.first ?? "")
        #expect(line.hasPrefix("error: "), "\(line)")
        for text in expected {
            #expect(line.contains(text), "\(badCase): \"\(text)\" not in: \(line)")
        }
        #expect(!FileManager.default.fileExists(atPath: out), "\(badCase): output written")
        // No temporary file left behind either.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder.url.path).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test("eval on a folder of plain (not gzipped) IDX files")
    func evalReadsPlainIDXFolder() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let arguments = try Self.evalFolder(folder, images: Self.idx(magic: 0x803, dimensions: [3, 28, 28],
                                                                     payload: 3 * 784),
                                            labels: Self.idx(magic: 0x801, dimensions: [3], payload: 3))
        let json = folder.path("report.json")
        let result = try vitforge(arguments.map { $0 == "OUT" ? json : $0 })
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        #expect(report?["images"] as? Int == 3)
        #expect((report?["per_class"] as? [String: Double])?.keys.sorted() == ["0"])
    }
}
