import Foundation
import Testing
import ViTForgeTestBasics

/// `vitforge bench --profile` (issue 31, part 4): one more run with every CPU operation timed.
@Suite struct BenchOperationProfileTests {
    @Test func trainingStepProfileNamesTheStepsOperations() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let json = folder.path("profile.json")
        let result = try vitforge(["bench", "--device", "cpu", "--model", fixture("fm-vit-c.safetensors"),
                                   "--heads", "2", "--batch", "3", "--train", "--warmup", "0", "--runs", "1",
                                   "--profile", "--json", json])
        try #require(result.status == 0, "bench --profile failed: \(result.stderr)")
        #expect(result.stdout.contains("by category"), "\(result.stdout)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
        let row = try #require(((report as? [String: Any])?["results"] as? [[String: Any]])?.first)
        let entries = row["op_profile"] as? [[String: Any]] ?? []
        let calls = Dictionary(uniqueKeysWithValues: entries.compactMap { entry in
            (entry["name"] as? String).map { ($0, entry["calls"] as? Int ?? 0) }
        })
        // fm-vit-c has 4 blocks (timm names): 2 LayerNorms forward and backward and one MLP per block, one
        // final LayerNorm, and AdamW on every parameter tensor.
        let facts = try facts("fm-vit-c")
        let depth = try #require((facts["timm_kwargs"] as? [String: Any])?["depth"] as? Int)
        // Every residual add but the last runs with the LayerNorm after it (residualLayerNormForward): block 0's
        // norm1 and the final norm are the plain ones.
        #expect(calls["layerNormForward"] == 2 && calls["residualLayerNormForward"] == 2 * depth - 1, "\(calls)")
        #expect(calls["add"] == 1, "\(calls)")
        #expect(calls["layerNormBackward"] == 2 * depth + 1, "\(calls)")
        #expect(calls["biasGeluForward"] == depth && calls["biasGeluBackward"] == depth, "\(calls)")
        #expect((calls["gemm"] ?? 0) > 0 && (calls["adamwStep"] ?? 0) > 0, "\(calls)")
        #expect(entries.allSatisfy { ($0["ms"] as? Double ?? -1) >= 0 })
        let times = entries.compactMap { $0["ms"] as? Double }
        #expect(times == times.sorted(by: >), "not largest first")
    }

    @Test(.enabled(if: DeviceErrorTests.openCLPresent, "no OpenCL device on this machine (CI has PoCL)"))
    func openCLIsRefusedInOneLine() throws {
        let result = try vitforge(["bench", "--device", "opencl", "--model", fixture("fm-vit-c.safetensors"),
                                   "--heads", "2", "--batch", "1", "--warmup", "0", "--runs", "1", "--profile"])
        #expect(result.status != 0)
        #expect(result.stderrLines.count == 1 && result.stderr.contains("VITFORGE_OPENCL_PROFILE"), "\(result.stderr)")
    }
}
