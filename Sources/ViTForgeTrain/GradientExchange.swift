import Dispatch
import ViTForgeDevice

/// Sums gradient buffers over the ranks of a data-parallel run: the buffers are copied into one host bucket at a
/// time (up to `bucketElements` floats, several small tensors per bucket), each bucket is summed with one
/// all-reduce, and the sums are copied back. Bucketing keeps the number of all-reduce calls (and their per-call
/// latency) small for the ~150 small tensors of a ViT, and the host memory bounded for a big model (DeiT-B's
/// 86.6M gradients would otherwise need a 346 MB copy).
///
/// The all-reduce is not overlapped with the backward (see Benchmarks/mpi_allreduce.sh's note): it runs after the
/// whole backward, so the summation order, and so the result, does not depend on timing.
public final class GradientExchange {
    public let collective: any Collective
    public let bucketElements: Int
    private var bucket: [Float] = []
    /// Seconds spent in the exchange (copies included) since the last `resetTiming`, and its calls.
    public private(set) var seconds = 0.0
    public private(set) var calls = 0

    public init(collective: any Collective, bucketElements: Int = 1 << 22) {
        self.collective = collective
        self.bucketElements = max(bucketElements, 1)
    }

    /// Replaces every buffer's first `count` elements by their sum over all ranks. Every rank passes the same
    /// buffers (counts and order).
    public func allReduceSum(_ buffers: [(buffer: Buffer, count: Int)], backend: Backend) throws {
        let started = DispatchTime.now().uptimeNanoseconds
        let total = buffers.reduce(0) { $0 + $1.count }
        let capacity = min(total, bucketElements)
        if bucket.count < capacity { bucket = [Float](repeating: 0, count: capacity) }
        // Walks the buffers in order, filling the bucket with consecutive pieces; a big tensor spans buckets.
        var pieces: [(buffer: Buffer, offset: Int, count: Int, at: Int)] = []
        var filled = 0
        func flush() throws {
            guard filled > 0 else { return }
            try bucket.withUnsafeMutableBufferPointer { values in
                let used = UnsafeMutableBufferPointer(rebasing: values[0 ..< filled])
                try collective.allReduceSum(used)
                for piece in pieces {
                    try backend.upload(UnsafeBufferPointer(rebasing: values[piece.at ..< piece.at + piece.count]),
                                       to: piece.buffer, offset: piece.offset)
                }
            }
            pieces.removeAll(keepingCapacity: true)
            filled = 0
        }
        for (buffer, count) in buffers {
            var offset = 0
            while offset < count {
                let n = min(count - offset, capacity - filled)
                try bucket.withUnsafeMutableBufferPointer { values in
                    try backend.download(buffer, offset: offset,
                                         into: UnsafeMutableBufferPointer(rebasing: values[filled ..< filled + n]))
                }
                pieces.append((buffer, offset, n, filled))
                filled += n
                offset += n
                if filled == capacity { try flush() }
            }
        }
        try flush()
        seconds += Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        calls += 1
    }

    public func resetTiming() {
        seconds = 0
        calls = 0
    }
}
