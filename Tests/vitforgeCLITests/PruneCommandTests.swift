import Foundation
import Testing
import ViTForgeModel

/// `vitforge prune` through the binary: a physically smaller model that every other command loads with no extra
/// flags, and a report with the documented keys.
struct PruneCommandTests {
    static let fashionMNISTPresent = FileManager.default.fileExists(
        atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")

    @Test("prune (each method) → smaller model; info, eval and infer load it with no flags; report keys",
          .enabled(if: fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"),
          arguments: ["vbp", "magnitude", "taylor", "random"])
    func pruneThenUse(method: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let pruned = folder.path("pruned.safetensors"), report = folder.path("report.json")
        let result = try vitforge([
            "prune", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2", "--method", method,
            "--target-macs", "0.6", "--classes", "7", "--calib-images", "300", "--calib-batches", "2",
            "--batch-size", "97", "--latency-batches", "3", "--out", pruned, "--report", report, "--device", "cpu",
        ])
        #expect(result.status == 0, "\(result.stderr)")

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        let original = json?["original"] as? [String: Any], after = json?["pruned"] as? [String: Any]
        let originalMacs = original?["macs"] as? Double ?? 0, prunedMacs = after?["macs"] as? Double ?? 0
        #expect(abs(prunedMacs / originalMacs - 0.6) <= 0.02, "MACs kept \(prunedMacs / originalMacs), target 0.6")
        #expect(original?["params"] != nil && after?["params"] != nil)
        #expect(original?["accuracy"] != nil && after?["accuracy"] != nil)
        #expect((after?["per_block"] as? [Any])?.count == 4)

        let weights = try ViTWeights.load(path: pruned)
        #expect(weights.config.blocks.map(\.mlpHidden).reduce(0, +) < 4 * 384)
        #expect(weights.config.blocks.allSatisfy { abs($0.attentionScale - 1 / 48.0.squareRoot()) < 1e-12 })

        let info = try vitforge(["info", pruned])
        #expect(info.status == 0, "\(info.stderr)")
        let evaluation = try vitforge(["eval", "--model", pruned, "--classes", "7", "--device", "cpu"])
        #expect(evaluation.status == 0, "\(evaluation.stderr)")
        let logits = folder.path("logits.safetensors")
        let inference = try vitforge(["infer", "--model", pruned, "--input", fixture("fm-vit-c-ref.safetensors"),
                                      "--out", logits, "--device", "cpu"])
        #expect(inference.status == 0, "\(inference.stderr)")
        #expect(try SafetensorsFile(path: logits).shape("logits") == [16, 10])
    }
}
