import Foundation
import Testing
import ViTForgeTestBasics

/// `vitforge export`: writes the file (onnxruntime's agreement is checked in CI by Tests/Deployment/onnx_check.py,
/// the graph's arithmetic by ViTForgeExportTests), never over its input, one-line errors.
struct ExportCommandTests {
    @Test("export --format onnx writes a model; over the input or from a bad model it fails in one line")
    func export() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let out = folder.path("c.onnx")
        let written = try vitforge(["export", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2",
                                    "--format", "onnx", "--out", out])
        #expect(written.status == 0, "\(written.stderr)")
        #expect(written.stdout.contains("opset 17"))
        let size = (try FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        #expect(size > 1_800_000)  // every float32 weight, once (fm-vit-c has 455,050)

        let model = folder.path("copy.safetensors")
        try FileManager.default.copyItem(atPath: fixture("fm-vit-c.safetensors"), toPath: model)
        let before = try Data(contentsOf: URL(fileURLWithPath: model))
        let overInput = try vitforge(["export", "--model", model, "--heads", "2", "--out", model])
        #expect(overInput.status != 0 && overInput.stderrLines.count == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: model)) == before)

        let missing = try vitforge(["export", "--model", folder.path("none.safetensors"), "--out", folder.path("x.onnx")])
        #expect(missing.status != 0 && missing.stderrLines.count == 1 && missing.stderr.contains("none.safetensors"))
        #expect(!FileManager.default.fileExists(atPath: folder.path("x.onnx")))
    }
}
