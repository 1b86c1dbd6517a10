import CFMAPeak
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The CPU's measured float32 FMA peak: a loop of independent fused multiply-adds that touches no memory, with the
/// widest instruction set the CPU runs (AVX-512, else AVX2 + FMA, checked at run time), on one core and on
/// `threads` cores at once. What a GEMM or a whole model reaches is reported as a share of it (`vitforge bench`).
///
/// Each thread's rate is its FLOPs over its own CPU time (`CLOCK_THREAD_CPUTIME_ID`), not over wall time: on a
/// shared machine another process that takes the core stops the clock too, so the rate is what the core does while
/// it runs the loop (with wall time, a loaded 2-core machine read 42 GFLOP/s for a 117 GFLOP/s core, below what
/// OpenBLAS reached in the same minute). The all-core rate is the sum of the threads' rates while they run at the
/// same time. A measurement is the best of `repeats` runs of about `seconds` each.
public struct FMAPeak: Codable, Sendable, Equatable {
    /// "AVX-512", "AVX2+FMA" or "generic" (plain C on a CPU without x86 FMA: a lower bound).
    public var instructionSet: String
    /// GFLOP/s (2 FLOPs per lane per FMA) of one thread.
    public var perCoreGflops: Double
    /// GFLOP/s of `threads` threads running the loop at the same time.
    public var allCoresGflops: Double
    public var threads: Int

    enum CodingKeys: String, CodingKey {
        case instructionSet = "instruction_set"
        case perCoreGflops = "per_core_gflops"
        case allCoresGflops = "all_cores_gflops"
        case threads
    }

    /// The instruction set the loop uses on this CPU.
    public static var instructionSet: String {
        switch vf_peak_isa() {
        case VFPeakAVX512: return "AVX-512"
        case VFPeakAVX2: return "AVX2+FMA"
        default: return "generic"
        }
    }

    /// Measures the peak on one thread and on `threads` threads (the machine's online cores by default).
    public static func measure(threads: Int? = nil, seconds: Double = 0.05, repeats: Int = 5) -> FMAPeak {
        let cores = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let isa = vf_peak_isa()
        // About `seconds` per run, from a short calibration run.
        let probe = 200_000
        let probeTime = max(run(isa, probe).seconds, 1e-6)
        let iterations = max(probe, Int(Double(probe) * seconds / probeTime))
        let single = (0 ..< max(1, repeats)).map { _ in rate(isa, iterations, threads: 1) }.max() ?? 0
        let all = cores == 1 ? single
            : (0 ..< max(1, repeats)).map { _ in rate(isa, iterations, threads: cores) }.max() ?? 0
        return FMAPeak(instructionSet: instructionSet, perCoreGflops: single, allCoresGflops: all, threads: cores)
    }

    /// The summed GFLOP/s of `threads` threads each running `iterations` rounds at the same time.
    private static func rate(_ isa: VFPeakISA, _ iterations: Int, threads: Int) -> Double {
        var rates = [Double](repeating: 0, count: threads)
        rates.withUnsafeMutableBufferPointer { results in
            // Each worker writes its own element.
            DispatchQueue.concurrentPerform(iterations: threads) { index in
                let (flops, seconds) = run(isa, iterations)
                results[index] = flops / max(seconds, 1e-9) / 1e9
            }
        }
        return rates.reduce(0, +)
    }

    /// One run of the loop on the calling thread: its FLOPs and the thread's CPU seconds.
    private static func run(_ isa: VFPeakISA, _ iterations: Int) -> (flops: Double, seconds: Double) {
        var sink: Float = 0
        let start = threadCPUSeconds()
        let flops = vf_peak_run(isa, iterations, &sink)
        let seconds = threadCPUSeconds() - start
        // The loop's result, kept: without a use the optimiser could drop the call's result but not the call
        // (it is opaque C); the check only keeps the value alive.
        precondition(sink.isFinite, "FMA peak loop produced \(sink)")
        return (flops, seconds)
    }

    private static func threadCPUSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
