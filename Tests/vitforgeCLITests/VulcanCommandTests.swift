import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// `vitforge prune --method vulcan` and `eval --classes --json` through the binary: classes by name, a trimmed head
/// that records its class ids, and the restricted accuracy.
struct VulcanCommandTests {
    @Test("prune --method vulcan --classes by name --trim-head (no post-training); eval maps the trimmed head back",
          .enabled(if: PruneCommandTests.fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"))
    func vulcanTrimmedHead() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let pruned = folder.path("pruned.safetensors"), report = folder.path("report.json")
        let result = try vitforge([
            "prune", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2", "--method", "vulcan",
            "--classes", "sneaker,Sandal", "--prune-ratio", "0.6", "--trim-head", "--calib-images", "300",
            "--batch-size", "97", "--latency-batches", "3", "--out", pruned, "--report", report, "--device", "cpu",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let weights = try ViTWeights.load(path: pruned)
        #expect(weights.config.classIds == [7, 5] && weights.config.classes == 2)
        #expect(weights.config.blocks.allSatisfy { $0.qkDim % 8 == 0 && $0.vDim % 8 == 0 && $0.mlpHidden % 8 == 0 })
        #expect(weights.config.blocks.allSatisfy { abs($0.attentionScale - 1 / Double($0.qkDim).squareRoot()) < 1e-12 })
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        let metrics = json?["method_metrics"] as? [String: Double]
        #expect(metrics?["base_accuracy"] != nil && metrics?["base_accuracy_restricted"] != nil)

        // The trimmed model's two accuracies coincide; the base's restricted one is at least its full one.
        for (model, trimmed) in [(pruned, true), (fixture("fm-vit-c.safetensors"), false)] {
            let evaluation = folder.path("eval-\(trimmed).json")
            let run = try vitforge(["eval", "--model", model, "--heads", "2", "--classes", "5,7", "--json", evaluation,
                                    "--device", "cpu"])
            #expect(run.status == 0, "\(run.stderr)")
            let values = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: evaluation)))
                as? [String: Any]
            let accuracy = try #require(values?["accuracy"] as? Double)
            let restricted = try #require(values?["accuracy_restricted"] as? Double)
            #expect(trimmed ? accuracy == restricted : restricted >= accuracy, "\(model): \(accuracy) vs \(restricted)")
            #expect(values?["images"] as? Int == 2000)
        }
        // infer says which class each logit column is.
        let logits = folder.path("logits.safetensors")
        let inference = try vitforge(["infer", "--model", pruned, "--input", fixture("fm-vit-c-ref.safetensors"),
                                      "--out", logits, "--device", "cpu"])
        #expect(inference.status == 0, "\(inference.stderr)")
        let file = try SafetensorsFile(path: logits)
        #expect(try file.shape("logits") == [16, 2] && file.metadata["vitforge.class_ids"] == "7,5")
        // A class name the data set does not have: one line naming it.
        let bad = try vitforge(["eval", "--model", pruned, "--classes", "sneaker,boots", "--device", "cpu"])
        #expect(bad.status != 0 && bad.stderr.contains("boots"))
    }
}
