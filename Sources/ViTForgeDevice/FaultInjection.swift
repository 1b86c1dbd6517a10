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
/// - `VITFORGE_FAULT_OPENCL_AFTER=N`: the first N checked OpenCL calls run; every later one fails with
///   CL_OUT_OF_RESOURCES, as a device that has gone away does. It also lets `--device auto` pick a non-GPU OpenCL
///   device (PoCL on CI, which `auto` otherwise never picks), so that `auto`'s mid-run fallback can be tested.
public enum FaultInjection {
    #if VITFORGE_FAULT_INJECTION
    public static let isCompiledIn = true
    #else
    public static let isCompiledIn = false
    #endif

    /// Atomic writes allowed before they start failing, or nil (no fault).
    public static let writesBeforeFailure: Int? = setting("VITFORGE_FAULT_WRITE_AFTER")
    /// Checked OpenCL calls allowed before they start failing, or nil (no fault).
    public static let openCLCallsBeforeFailure: Int? = setting("VITFORGE_FAULT_OPENCL_AFTER")

    /// Counts one atomic write; true when this one must fail.
    public static func writeShouldFail() -> Bool {
        guard let limit = writesBeforeFailure else { return false }
        return writes.next() > limit
    }

    /// Counts one OpenCL call; true when this one must fail.
    static func openCLCallShouldFail() -> Bool {
        guard let limit = openCLCallsBeforeFailure else { return false }
        return openCLCalls.next() > limit
    }

    private static let writes = Counter()
    private static let openCLCalls = Counter()

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
    }
}
