import COpenCL
import ViTForgeSupport
#if canImport(Glibc)
import Glibc
#endif

// Device time per kernel (and per CLBlast GEMM shape), from the command queue's profiling events, as
// `OperationTime` records.
//
// With `VITFORGE_OPENCL_PROFILE=1` a device's queue is created with `CL_QUEUE_PROFILING_ENABLE` and every kernel
// launch and GEMM keeps its event until `OpenCLBackend.takeProfile()` reads the events' start and end times. Off
// by default: profiling queues may serialise work, and the events cost host time, so timings taken without it are
// the ones to compare; with it, the split of one step between kernels is what it answers.

/// Whether queues are created with profiling (`VITFORGE_OPENCL_PROFILE=1`); read when a device's context is made.
enum OpenCLProfiling {
    static var requested: Bool {
        guard let value = getenv("VITFORGE_OPENCL_PROFILE") else { return false }
        return String(cString: value) == "1"
    }
}

/// The events of one device's queue since the last `take`, under a lock (launches come from several threads).
final class OpenCLEventLog: @unchecked Sendable {
    private var events: [(name: String, event: cl_event)] = []
    private let lock = ProcessLock()

    func record(_ name: String, _ event: cl_event?) {
        guard let event else { return }
        lock.withLock { events.append((name, event)) }
    }

    /// The recorded events' device times per name (largest total first), releasing them; the queue must have
    /// finished them (the caller waits first).
    func take() throws -> [OperationTime] {
        let taken = lock.withLock { () -> [(name: String, event: cl_event)] in
            defer { events.removeAll() }
            return events
        }
        defer { for entry in taken { clReleaseEvent(entry.event) } }
        var totals: [String: (calls: Int, nanoseconds: UInt64)] = [:]
        for (name, event) in taken {
            var start: cl_ulong = 0, end: cl_ulong = 0
            try checkCL(clGetEventProfilingInfo(event, cl_profiling_info(CL_PROFILING_COMMAND_START),
                                                MemoryLayout<cl_ulong>.size, &start, nil), "clGetEventProfilingInfo")
            try checkCL(clGetEventProfilingInfo(event, cl_profiling_info(CL_PROFILING_COMMAND_END),
                                                MemoryLayout<cl_ulong>.size, &end, nil), "clGetEventProfilingInfo")
            let previous = totals[name] ?? (0, 0)
            totals[name] = (previous.calls + 1, previous.nanoseconds + (end >= start ? end - start : 0))
        }
        return OperationTime.records(totals)
    }
}

extension OpenCLBackend {
    /// True when this device's queue profiles (`VITFORGE_OPENCL_PROFILE=1` when the device was first opened).
    public var isProfiling: Bool { eventLog != nil }

    /// Waits for the queue, then returns the device time of every kernel and GEMM enqueued (by any backend of this
    /// device) since the previous call, and forgets them. Empty when the queue does not profile.
    public func takeProfile() throws -> [OperationTime] {
        guard let eventLog else { return [] }
        try synchronize()
        return try eventLog.take()
    }
}
