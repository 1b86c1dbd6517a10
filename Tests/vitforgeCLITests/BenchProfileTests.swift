import Foundation
import Testing
import ViTForgeTestBasics

/// `vitforge bench` with `VITFORGE_OPENCL_PROFILE=1` (the GPU run's profile stage, Benchmarks/gpu): each row carries
/// the device time per kernel and per GEMM shape of one more run, and always its blocking calls.
@Suite struct BenchProfileTests {
    func benchRow(_ extra: [String: String], _ folder: TemporaryFolder) throws -> [String: Any] {
        let json = folder.path("bench-\(extra.isEmpty ? "plain" : "profiled").json")
        let result = try vitforge(["bench", "--device", "opencl", "--model", fixture("fm-vit-c.safetensors"),
                                   "--heads", "2", "--batch", "3", "--train", "--warmup", "1", "--runs", "1",
                                   "--json", json], environment: extra)
        try #require(result.status == 0, "bench failed: \(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
        let rows = (report as? [String: Any])?["results"] as? [[String: Any]] ?? []
        return try #require(rows.first)
    }

    @Test(.enabled(if: DeviceErrorTests.openCLPresent, "no OpenCL device on this machine (CI has PoCL)"))
    func profiledTrainingStep() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let plain = try benchRow([:], folder)
        #expect(plain["kernel_profile"] == nil, "a profile without VITFORGE_OPENCL_PROFILE")
        // A training step waits for the device at least once (the bench's own wait at its end).
        #expect((plain["blocking_calls_per_run"] as? Int ?? 0) >= 1)

        let profiled = try benchRow(["VITFORGE_OPENCL_PROFILE": "1"], folder)
        let entries = profiled["kernel_profile"] as? [[String: Any]] ?? []
        let names = Set(entries.compactMap { $0["name"] as? String })
        // A training step runs LayerNorm, AdamW, the fused attention and CLBlast's GEMMs (named by shape).
        for kernel in ["layernorm_forward", "adamw_step"] { #expect(names.contains(kernel), "\(kernel) in \(names)") }
        #expect(names.contains { $0.hasPrefix("attention_") }, "no attention kernel in \(names)")
        #expect(names.contains { $0.hasPrefix("sgemm NT ") }, "no forward GEMM in \(names)")
        #expect(entries.allSatisfy { ($0["calls"] as? Int ?? 0) >= 1 && ($0["ms"] as? Double ?? -1) >= 0 })
        #expect(entries.contains { ($0["ms"] as? Double ?? 0) > 0 }, "every kernel took 0 ms")
        let times = entries.compactMap { $0["ms"] as? Double }
        #expect(times == times.sorted(by: >), "not largest first")
    }
}
