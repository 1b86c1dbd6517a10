#if canImport(Glibc)
import Glibc
#endif

/// Faults the reliability tests inject where permissions cannot (CI runs as root, so a read-only folder does not
/// stop a write) and where real hardware faults cannot be had on demand (a GPU that dies mid-run).
///
/// Compiled in only when the build defines `VITFORGE_FAULT_INJECTION` (`-Xswiftc -DVITFORGE_FAULT_INJECTION`, as
/// `.ci/run` builds the test binary); a build without it reads no environment variable here and every hook is a
/// constant that the optimiser removes. The variables, read once per process:
/// - `VITFORGE_FAULT_WRITE_AFTER=N`: the first N atomic file writes succeed; every later one writes half its bytes
///   and then fails as a full disk would (ENOSPC), so the temporary file is abandoned and the destination kept.
/// - `VITFORGE_FAULT_INTERRUPT=PASS:N`: Ctrl-C arrives after batch N (1-based) of the first pass named PASS
///   (`evaluation`, `calibration`, `latency search`, `latency`), at the point a real one would be noticed.
/// - `VITFORGE_FAULT_OPENCL_AT_STEP=N`: once the trainer has begun its step N (1-based), every checked OpenCL call
///   fails with CL_OUT_OF_RESOURCES, as a device that has gone away does — at a point that does not move when a step
///   makes fewer or more calls (argument caching, fused kernels). It also lets `--device auto` pick a non-GPU OpenCL
///   device (PoCL on CI, which `auto` otherwise never picks), so that `auto`'s mid-run fallback can be tested.
/// - `VITFORGE_FAULT_LATENCY_MS_PER_GMAC=K`: `--target-latency` solves on a cost model instead of the device's clock
///   (one batch of a shape takes K ms per 10⁹ MACs), so that a test checks what the solver does with latencies
///   without timing a shared machine. The report's latencies are still measured.
public enum FaultInjection {
    #if VITFORGE_FAULT_INJECTION
    public static let isCompiledIn = true
    #else
    public static let isCompiledIn = false
    #endif

    /// Atomic writes allowed before they start failing, or nil (no fault).
    public static let writesBeforeFailure: Int? = setting("VITFORGE_FAULT_WRITE_AFTER")
    /// The training step from which every checked OpenCL call fails, or nil (no fault).
    public static let openCLFailureStep: Int? = setting("VITFORGE_FAULT_OPENCL_AT_STEP")

    /// Milliseconds per 10⁹ MACs of the latency meter's cost model, or nil (the device's clock).
    public static let latencyMillisecondsPerGMAC: Double? = {
        #if VITFORGE_FAULT_INJECTION
        guard let pointer = getenv("VITFORGE_FAULT_LATENCY_MS_PER_GMAC"), let value = Double(String(cString: pointer)),
              value > 0, value.isFinite else { return nil }
        return value
        #else
        return nil
        #endif
    }()

    /// The pass and batch after which `VITFORGE_FAULT_INTERRUPT` raises Ctrl-C, or nil (no fault).
    public static let interruptAt: (pass: String, batch: Int)? = {
        #if VITFORGE_FAULT_INJECTION
        guard let pointer = getenv("VITFORGE_FAULT_INTERRUPT") else { return nil }
        let text = String(cString: pointer)
        guard let colon = text.lastIndex(of: ":"), let batch = Int(text[text.index(after: colon)...]), batch >= 1
        else { return nil }
        return (String(text[..<colon]), batch)
        #else
        return nil
        #endif
    }()

    /// True when a pass named `pass` that has done `batches` batches must see Ctrl-C.
    public static func interruptsPass(_ pass: String, afterBatches batches: Int) -> Bool {
        guard let interruptAt else { return false }
        return interruptAt.pass == pass && batches >= interruptAt.batch
    }

    /// Counts one atomic write; true when this one must fail.
    public static func writeShouldFail() -> Bool {
        guard let limit = writesBeforeFailure else { return false }
        return writes.next() > limit
    }

    /// True when this OpenCL call must fail.
    package static func openCLCallShouldFail() -> Bool {
        guard let failureStep = openCLFailureStep else { return false }
        return trainingStep.value >= failureStep
    }

    /// The trainer says which step (1-based) it begins; only `VITFORGE_FAULT_OPENCL_AT_STEP` reads it.
    public static func beginTrainingStep(_ step: Int) {
        guard openCLFailureStep != nil else { return }
        trainingStep.set(step)
    }

    private static let writes = Counter()
    private static let trainingStep = Counter()

    private static func setting(_ name: String) -> Int? {
        #if VITFORGE_FAULT_INJECTION
        guard let pointer = getenv(name), let value = Int(String(cString: pointer)), value >= 0 else { return nil }
        return value
        #else
        return nil
        #endif
    }

    /// A process-wide counter (the test suite and the OpenCL backend call from several threads).
    private final class Counter: @unchecked Sendable {
        private let lock = ProcessLock()
        private var count = 0

        /// The 1-based number of this call.
        func next() -> Int { lock.withLock { count += 1; return count } }
        var value: Int { lock.withLock { count } }
        func set(_ value: Int) { lock.withLock { count = value } }
    }
}
