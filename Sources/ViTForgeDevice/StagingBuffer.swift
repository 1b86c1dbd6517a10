import ViTForgeSupport
#if canImport(Glibc)
import Glibc
#endif

/// Host memory owned by a backend from which `Backend.uploadAsync` copies without waiting (see
/// `Backend.makeStaging` for the ownership rule). The same bytes are seen as floats (images) or Int32 (labels).
open class StagingBuffer {
    public let count: Int
    /// The area's first byte; valid for the buffer's lifetime, `4·count` bytes (at least 4).
    public let base: UnsafeMutableRawPointer

    public init(count: Int, base: UnsafeMutableRawPointer) {
        self.count = count
        self.base = base
    }

    /// The area as floats.
    public var floats: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: base.bindMemory(to: Float.self, capacity: max(count, 1)), count: count)
    }

    /// The area as Int32 (class indices).
    public var int32s: UnsafeMutableBufferPointer<Int32> {
        UnsafeMutableBufferPointer(start: base.bindMemory(to: Int32.self, capacity: max(count, 1)), count: count)
    }

    /// Returns once the device has read everything `uploadAsync` took from this area (at once when nothing is in
    /// flight); only then may the host write it again.
    open func waitForUpload() throws {}
}

/// A thread-safe counter (the backends' `blockingCalls`).
final class CallCounter: @unchecked Sendable {
    private let lock = ProcessLock()
    private var value = 0

    var count: Int { lock.withLock { value } }

    func increment() { lock.withLock { value += 1 } }
}
