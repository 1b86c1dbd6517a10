import Foundation
import Testing
import ViTForgeTestBasics

/// `vitforge bench --peak` and the share of the peak on every CPU row (issue 31, part 1).
@Suite struct BenchPeakTests {
    private func report(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] ?? [:]
    }

    @Test func peakAloneNeedsNoModel() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let json = folder.path("peak.json")
        let result = try vitforge(["bench", "--peak", "--json", json])
        try #require(result.status == 0, "bench --peak failed: \(result.stderr)")
        #expect(result.stdout.contains("FMA peak ("), "no peak line in: \(result.stdout)")
        let written = try report(json)
        let peak = try #require(written["fma_peak"] as? [String: Any], "no fma_peak in \(written)")
        #expect((peak["per_core_gflops"] as? Double ?? 0) > 0)
        #expect((peak["all_cores_gflops"] as? Double ?? 0) > 0)
        #expect((peak["threads"] as? Int ?? 0) >= 1)
        #expect(["AVX-512", "AVX2+FMA", "generic"].contains(peak["instruction_set"] as? String ?? ""))
        #expect((written["results"] as? [Any])?.isEmpty == true)
    }

    @Test func noModelAndNoPeakIsOneLine() throws {
        let result = try vitforge(["bench"])
        #expect(result.status != 0)
        #expect(result.stderrLines.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("--model") && result.stderr.contains("--peak"), "\(result.stderr)")
    }

    /// A CPU row carries its GFLOP/s as a share of the all-core peak the same report records.
    @Test func cpuRowsReportTheirShareOfThePeak() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let json = folder.path("bench.json")
        let result = try vitforge(["bench", "--device", "cpu", "--model", fixture("fm-vit-c.safetensors"),
                                   "--heads", "2", "--batch", "2", "--warmup", "0", "--runs", "1", "--json", json])
        try #require(result.status == 0, "bench failed: \(result.stderr)")
        #expect(result.stdout.contains("% peak"))
        let written = try report(json)
        let peak = try #require((written["fma_peak"] as? [String: Any])?["all_cores_gflops"] as? Double)
        let row = try #require((written["results"] as? [[String: Any]])?.first)
        #expect(row["backend"] as? String == "cpu")
        let gflops = try #require(row["gflops_per_second"] as? Double)
        let share = try #require(row["fma_peak_share"] as? Double, "no share in \(row)")
        #expect(abs(share - gflops / peak) <= 1e-9 * max(1, share))
    }
}
