import Foundation
import Testing
@testable import ViTForgeDevice

/// The measured FMA peak behind `vitforge bench --peak`: the instruction set the CPU reports, positive rates, and a
/// peak no GEMM beats (a loop that is not the machine's limit would show up as a GEMM faster than "the peak").
@Suite struct FMAPeakTests {
    @Test func instructionSetFollowsTheCPUFlags() {
        let flags = OpenBLAS.cpuFlags()
        #if arch(x86_64)
        let expected = flags.contains("avx512f") ? "AVX-512"
            : flags.contains("avx2") && flags.contains("fma") ? "AVX2+FMA" : "generic"
        #else
        let expected = "generic"
        #endif
        #expect(FMAPeak.instructionSet == expected, "flags: \(flags.filter { $0.hasPrefix("avx") || $0 == "fma" })")
    }

    @Test func peakIsPositiveAndAboveAGemm() throws {
        let backend = CPUBackend()
        let peak = FMAPeak.measure(threads: backend.threads, seconds: 0.02, repeats: 10)
        #expect(peak.threads == backend.threads)
        #expect(peak.perCoreGflops > 0 && peak.perCoreGflops.isFinite)
        #expect(peak.allCoresGflops > 0 && peak.allCoresGflops.isFinite)

        // The backend's GEMM at a size where it runs near its best, fastest of 3.
        let size = 384
        let a = try backend.makeBuffer((0 ..< size * size).map { Float($0 % 7) * 0.1 })
        let b = try backend.makeBuffer((0 ..< size * size).map { Float($0 % 5) * 0.1 })
        let c = try backend.zeros(size * size)
        var best = Double.infinity
        for _ in 0 ..< 3 {
            let start = DispatchTime.now().uptimeNanoseconds
            try backend.gemm(GemmSpec(m: size, n: size, k: size), a: a, b: b, c: c)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let gemmGflops = 2 * Double(size * size * size) / best / 1e9
        #expect(gemmGflops <= peak.allCoresGflops, "GEMM \(gemmGflops) GFLOP/s above the peak \(peak)")
    }
}
