import CFMAPeak
import Foundation
import Testing
@testable import ViTForgeDevice

/// The measured FMA peak behind `vitforge bench --peak`: the instruction set the CPU reports, a finite positive
/// rate, and loops that do the FLOPs they count. Only what cannot depend on timing is checked here; whether a GEMM
/// stays below the peak is a measurement (`gemm-bench` prints every CPU GEMM's share of it, see Benchmarks/README.md).
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

    @Test func peakIsFiniteAndPositive() {
        let peak = FMAPeak.measure(threads: 2, seconds: 0.005, repeats: 1)
        #expect(peak.threads == 2)
        #expect(peak.instructionSet == FMAPeak.instructionSet)
        #expect(peak.perCoreGflops > 0 && peak.perCoreGflops.isFinite, "\(peak)")
        #expect(peak.allCoresGflops > 0 && peak.allCoresGflops.isFinite, "\(peak)")
    }

    /// Each loop's FLOP count (2 per lane per FMA) must be the work it does: its sink, the sum of every lane of
    /// every accumulator, must match lanes × the accumulators' float recurrences x ← x·0.9999 + 1e-4 computed here
    /// (a missing accumulator moves it by over 1%, a wrong width by 2×), and its FLOPs must be 2 × lanes × chains.
    /// Every loop up to the CPU's widest runs (an AVX-512 CPU runs AVX2 + FMA too).
    @Test func loopsDoTheFLOPsTheyCount() {
        let vectorStarts: [Float] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.3]
        let loops: [(isa: VFPeakISA, lanes: Int, starts: [Float])] = [
            (VFPeakScalar, 1, (1 ... 16).map { 0.1 * Float($0) }),
            (VFPeakAVX2, 8, vectorStarts),
            (VFPeakAVX512, 16, vectorStarts),
        ]
        let iterations = 1000
        for loop in loops where loop.isa.rawValue <= vf_peak_isa().rawValue {
            var sink: Float = 0
            let flops = vf_peak_run(loop.isa, iterations, &sink)
            #expect(flops == Double(2 * loop.lanes * loop.starts.count * iterations), "ISA \(loop.isa.rawValue)")
            let perLane = loop.starts.map { start -> Double in
                var x = start
                for _ in 0 ..< iterations { x = Float(1e-4).addingProduct(x, 0.9999) }
                return Double(x)
            }.reduce(0, +)
            let expected = Double(loop.lanes) * perLane
            #expect(abs(Double(sink) - expected) <= 1e-4 * expected,
                    "ISA \(loop.isa.rawValue): sink \(sink), expected \(expected)")
        }
    }
}
