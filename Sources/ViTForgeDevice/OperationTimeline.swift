import Foundation

/// Wall time per device operation, for `vitforge bench --profile`. Every public operation starts by building its
/// `ArgumentCheck`, which marks its start here while a recording runs; an operation's time is what passes until the
/// next one starts (or the recording stops). On the CPU backend, where every operation runs to completion before it
/// returns, that is the operation's own time plus the host's bookkeeping up to the next call; on an OpenCL device it
/// is only the time to enqueue, so the bench refuses it there (VITFORGE_OPENCL_PROFILE gives device times).
///
/// One recording at a time, started and stopped by the thread that runs the operations.
public enum OperationTimeline {
    /// Read on every operation; set only between `start` and `stop`.
    nonisolated(unsafe) private static var recording = false
    private static let lock = NSLock()
    private static var current: (name: String, start: UInt64)?
    private static var totals: [String: (calls: Int, nanoseconds: UInt64)] = [:]

    /// The name under which the time before the first operation is counted.
    public static let hostName = "host"

    /// Starts a recording (dropping any earlier one); the time until the first operation counts as `hostName`.
    public static func start() {
        lock.lock()
        defer { lock.unlock() }
        totals = [:]
        current = (hostName, DispatchTime.now().uptimeNanoseconds)
        recording = true
    }

    /// Marks the start of `operation` (and the end of the one before).
    static func enter(_ operation: String) {
        guard recording else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        lock.lock()
        defer { lock.unlock() }
        close(at: now)
        current = (operation, now)
    }

    /// Ends the recording and returns the time per operation, largest first.
    public static func stop() -> [OperationTime] {
        let now = DispatchTime.now().uptimeNanoseconds
        lock.lock()
        defer { lock.unlock() }
        close(at: now)
        recording = false
        return OperationTime.records(totals)
    }

    private static func close(at now: UInt64) {
        guard let (name, start) = current else { return }
        let total = totals[name] ?? (0, 0)
        // The host's stretch before the first operation is one stretch, not a call.
        totals[name] = (total.calls + (name == hostName ? 0 : 1), total.nanoseconds + (now - start))
        current = nil
    }
}
