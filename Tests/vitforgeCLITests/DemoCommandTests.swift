import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// `vitforge demo` through the binary, from an already trained model (training from scratch is what the README's
/// first command times; here the prune → report → compare path runs in seconds).
struct DemoCommandTests {
    @Test("demo --model: VBP to half the MLP, the comparison table, report.json, report.html, a loadable pruned model",
          .enabled(if: PruneCommandTests.fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"))
    func demoFromTrainedModel() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let out = folder.path("demo")
        let result = try vitforge(["demo", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2",
                                   "--calib-images", "300", "--finetune-epochs", "0", "--out-dir", out,
                                   "--device", "cpu"])
        #expect(result.status == 0, "\(result.stderr)")
        for row in ["accuracy", "params", "MACs/image", "MLP widths", "images/s @64"] {
            #expect(result.stdout.contains(row), "no \(row) row in:\n\(result.stdout)")
        }
        for file in ["pruned.safetensors", "report.json", "report.html"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + file), "\(file) missing")
        }
        let pruned = try ViTWeights.load(path: out + "/pruned.safetensors")
        let keptNeurons = pruned.config.blocks.map(\.mlpHidden).reduce(0, +)
        #expect(keptNeurons == 4 * 384 / 2)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json")))
            as? [String: Any]
        let original = json?["original"] as? [String: Any]
        let originalAccuracy = original?["accuracy"] as? Double
        #expect(originalAccuracy == 0.834, "the fixture's recorded test accuracy is 83.4%")
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(html.contains("<svg"))
    }
}
