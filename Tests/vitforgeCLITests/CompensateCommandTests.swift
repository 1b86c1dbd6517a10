import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// `vitforge prune --compensate` through the binary on fm-vit-c: the refit runs for one-shot methods (by default:
/// `pruneThenUse` runs vbp without the flag) and its per-layer errors reach the report; cpd and vulcan, and vbp
/// without its mean shift, refuse it in one line.
struct CompensateCommandTests {
    @Test("prune --compensate (magnitude, vbp, obs) on fm-vit-c: a pruned model, each layer's errors in the report",
          .enabled(if: PruneCommandTests.fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"),
          arguments: ["magnitude", "vbp", "obs"])
    func compensatedPrune(method: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let pruned = folder.path("pruned.safetensors"), report = folder.path("report.json")
        // Half of every block's heads go too (block scope: every layer cut; vbp by its head criterion).
        let heads = ["--keep-heads", "0.5", "--scope", "block"]
        let result = try vitforge([
            "prune", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2", "--method", method,
            "--keep-mlp", "0.5", "--compensate", "--calib-images", "200", "--classes", "7", "--batch-size", "97",
            "--latency-batches", "3", "--out", pruned, "--report", report, "--device", "cpu",
        ] + heads)
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        let records = try #require(json?["compensation"] as? [[String: Any]], "no compensation in the report")
        let depth = 4  // every attn.proj and fc2 (the sequential default), then the head
        #expect(records.count == 2 * depth + 1 && records.last?["layer"] as? String == "head")
        for record in records {
            let error = try #require(record["error"] as? [String: Double])
            let refit = try #require(error["refit"]), meanShift = try #require(error["mean_shift"])
            #expect(refit <= meanShift * (1 + 1e-9), "\(record["layer"] ?? "?"): refit \(refit), mean shift \(meanShift)")
        }
        #expect(try ViTWeights.load(path: pruned).config.blocks.map(\.mlpHidden).reduce(0, +) == 4 * 192)
    }

    @Test("prune --compensate --compensate-order sequential with a cut residual: every fc2 and attn.proj and the head refitted",
          .enabled(if: PruneCommandTests.fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"))
    func sequentialPrune() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let pruned = folder.path("pruned.safetensors"), report = folder.path("report.json")
        let result = try vitforge([
            "prune", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2", "--method", "taylor",
            "--keep-mlp", "0.5", "--keep-residual", "0.75", "--compensate", "--compensate-order", "sequential",
            "--calib-images", "150", "--classes", "7", "--batch-size", "64", "--latency-batches", "3",
            "--out", pruned, "--report", report, "--device", "cpu",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        let records = try #require(json?["compensation"] as? [[String: Any]], "no compensation in the report")
        #expect(records.compactMap { $0["layer"] as? String }.last == "head" && records.count == 2 * 4 + 1)
        for record in records {
            let error = try #require(record["error"] as? [String: Double])
            let refit = try #require(error["refit"]), meanShift = try #require(error["mean_shift"])
            #expect(refit <= meanShift * (1 + 1e-6), "\(record["layer"] ?? "?"): refit \(refit), mean shift \(meanShift)")
        }
        #expect(try ViTWeights.load(path: pruned).config.residualWidth == 72)
    }

    @Test("--compensate refused in one line: cpd, vulcan (with the reason), vbp with --no-bias-fold, a negative ridge",
          arguments: [["--method", "cpd", "--compensate"], ["--method", "vulcan", "--compensate"],
                      ["--method", "vbp", "--compensate", "--no-bias-fold"],
                      ["--method", "magnitude", "--compensate", "--compensate-ridge=-1"],
                      ["--method", "magnitude", "--no-compensate", "--compensate-ridge", "0.1"],
                      ["--method", "magnitude", "--no-compensate", "--compensate-order", "sequential"],
                      ["--method", "cpd", "--compensate-order", "parallel"],
                      ["--method", "magnitude", "--compensate", "--compensate-order", "serial"]])
    func refusals(flags: [String]) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let result = try vitforge(["prune", "--model", fixture("fm-vit-c.safetensors"), "--heads", "2",
                                   "--out", folder.path("p.safetensors"), "--device", "cpu"] + flags)
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage") && !$0.hasPrefix("  See") }
        #expect(lines.first?.contains("compensate") == true, "\(result.stderr)")
        if (flags[1] == "cpd" || flags[1] == "vulcan") && flags.contains("--compensate") {
            #expect(result.stderr.contains("one-shot"))
        }
        #expect(!FileManager.default.fileExists(atPath: folder.path("p.safetensors")))
    }
}
