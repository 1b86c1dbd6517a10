import Foundation
import Testing
import ViTForgeFormats
import ViTForgeTestBasics

/// `prune --target-latency MS --latency-table T` through the binary, with no clock read: under
/// `VITFORGE_FAULT_LATENCY_MS_PER_GMAC` both `bench --latency-table` and the meter are the same cost model (K ms per
/// 10⁹ MACs), so the table is right but for the patch embedding and head, and one measured shape meets the target.
struct LatencyTableSolveTests {
    static let environment = ["VITFORGE_FAULT_LATENCY_MS_PER_GMAC": "3"]

    @Test("--target-latency solved from bench's table: one shape timed, recorded; with --round-to table too; a table for another batch and flags without a reader refused in one line",
          .enabled(if: PruneCommandTests.fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"),
          .enabled(if: FaultTests.faultHooks, "built without -DVITFORGE_FAULT_INJECTION (.ci/run builds with it)"))
    func solveFromTable() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = fixture("fm-vit-b.safetensors"), table = folder.path("table.json")
        let bench = try vitforge(["bench", "--model", model, "--heads", "4", "--batch", "2", "--runs", "1",
                                  "--latency-table", table, "--device", "cpu"], environment: Self.environment)
        #expect(bench.status == 0, "\(bench.stderr)")
        let target = 0.6 * 3 * Double(try ViTWeights.load(path: model, heads: 4).config.cost().macs * 2) / 1e9
        let common = ["prune", "--model", model, "--heads", "4", "--method", "magnitude", "--no-compensate",
                      "--target-latency", "\(target)", "--classes", "7", "--latency-batches", "2", "--device", "cpu"]
        for rounding in [[], ["--round-to", "table"]] {
            let report = folder.path("report.json"), out = folder.path("pruned.safetensors")
            let html = folder.path("report.html")
            let result = try vitforge(common + rounding + ["--latency-batch", "2", "--latency-table", table,
                                                          "--out", out, "--report", report, "--html", html],
                                      environment: Self.environment)
            #expect(result.status == 0, "\(result.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report)))
                as? [String: Any])
            let solve = try #require(json["latency_solve"] as? [String: Any], "\(rounding)")
            #expect(solve["table_path"] as? String == table && (solve["table_hash"] as? String)?.hasPrefix("fnv1a64:") == true)
            #expect(solve["measurements"] as? Int == 1 && solve["table_rounds"] as? Int == 1 && solve["fallback"] == nil,
                    "\(rounding): \(solve)")
            let measured = try #require(solve["measured_ms"] as? Double), predicted = try #require(solve["predicted_ms"] as? Double)
            #expect(abs(measured - target) <= 0.05 * target && predicted < measured, "\(measured) for \(target)")
            #expect((json["latency_table"] as? [String: Any])?["path"] as? String == table)
            #expect(result.stdout.contains("solved from the table \(table)"), "\(result.stdout)")
            let page = try String(contentsOfFile: html, encoding: .utf8)
            #expect(page.contains("<p>Latency target: ") && page.contains("1 shape measured"))
        }

        // Refusals: one line, nothing written.
        let out = folder.path("refused.safetensors")
        let otherBatch = try vitforge(common + ["--latency-batch", "3", "--latency-table", table, "--out", out],
                                      environment: Self.environment)
        let cpd = try vitforge(["prune", "--model", model, "--heads", "4", "--method", "cpd", "--epochs", "1",
                                "--target-latency", "\(target)", "--latency-batch", "2", "--latency-table", table,
                                "--classes", "7", "--out", out, "--device", "cpu"])
        let noReader = try vitforge(["prune", "--model", model, "--heads", "4", "--keep-mlp", "0.5",
                                     "--latency-table", table, "--out", out, "--device", "cpu"])
        let cases = [(otherBatch, "--latency-table \(table): measured at batch 2, the target is at --latency-batch 3"),
                     (cpd, "--latency-table does not solve its --target-latency"),
                     (noReader, "--latency-table T is read by --round-to table and --target-latency")]
        for (result, message) in cases {
            let errors = result.stderrLines.filter { $0.hasPrefix("error:") }
            #expect(result.status != 0 && errors.count == 1 && errors.first?.contains(message) == true
                    && !result.stderr.contains("Fatal error"), "\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
