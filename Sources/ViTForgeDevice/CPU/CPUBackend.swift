import CBLAS
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The CPU backend: OpenBLAS (or oneDNN, `GemmLibrary`) for the matrix products, Swift loops over unsafe pointers for everything else.
/// Every operation runs synchronously on the calling thread (splitting big ones over `threads` Dispatch workers),
/// so `synchronize` has nothing to wait for.
///
/// The operations are spread over one file per family (`CPUBackend+Gemm.swift`, `+Rows`, `+Losses`, …); this file
/// holds the buffers and the parallel loop they all share. Arguments arrive checked (`ArgumentCheck`).
public final class CPUBackend: Backend {
    /// Workers for the Swift loops and for the blocks of a GEMM (OpenBLAS itself runs single-threaded).
    public let threads: Int
    let parallelThreshold: Int
    /// Nothing here waits for a device; the count says what would have on one (`Backend.blockingCalls`).
    let blockingCounter = CallCounter()
    public var blockingCalls: Int { blockingCounter.count }

    /// The library behind the matrix products (`VITFORGE_GEMM`; see `GemmSelection`). Changed only between
    /// operations, by `useGemm` (a run resumed from a checkpoint continues on the selection it was written with).
    public private(set) var gemm: GemmSelection

    /// Names the GEMM library, so that bench JSON and reports record it.
    public var name: String { "cpu (\(gemm.label), \(threads) thread\(threads == 1 ? "" : "s"))" }
    public var kind: BackendKind { .cpu }
    public var capabilities: DeviceCapabilities { .cpu }

    /// `threads` defaults to the machine's online core count; values below 1 are treated as 1. `gemm` defaults to
    /// `VITFORGE_GEMM` (`GemmSelection.standard` when unset: oneDNN where installed, else OpenBLAS; the command
    /// line has rejected a value it does not know, see `DeviceSelection.makeBackend`, and a library caller gets
    /// OpenBLAS for one).
    /// Sets OpenBLAS's (process-wide) thread count to 1: the backend splits each GEMM over its own workers.
    public convenience init(threads: Int? = nil, gemm: GemmSelection? = nil) {
        self.init(threads: threads, parallelThreshold: 1 << 16, gemm: gemm)
    }

    /// `parallelThreshold`: below this many elements of work an operation runs on the calling thread. Waking a
    /// second worker costs a few microseconds, about what 2 cores save on 64 Ki simple float operations. Tests
    /// pass 0 to send every loop, however small, through the chunked parallel path.
    init(threads: Int?, parallelThreshold: Int, gemm: GemmSelection? = nil) {
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        self.threads = max(1, threads ?? cores)
        self.parallelThreshold = parallelThreshold
        self.gemm = gemm ?? ((try? GemmSelection.fromEnvironment().get()) ?? .pinned(.openblas))
        // One thread pool, not two: OpenBLAS's idle workers spin in sched_yield for a while after every call and
        // took the cores from the Dispatch workers of the next Swift loop (perf: ~15% of a DeiT-Tiny forward in
        // the scheduler). Splitting C ourselves over single-threaded OpenBLAS calls keeps only Dispatch's workers.
        openblas_set_num_threads(1)
    }

    /// Switches the library of the products that follow (between operations, never during one); refused when
    /// this machine lacks it (oneDNN not installed).
    public func useGemm(_ selection: GemmSelection) throws {
        if let problem = selection.problem {
            throw BackendError.invalidArgument("\(GemmSelection.variable)=\(selection.setting): \(problem)")
        }
        gemm = selection
    }

    // MARK: Buffers

    public func uncheckedAllocate(_ count: Int) throws -> Buffer {
        return CPUBuffer(count: count)
    }

    public func uncheckedUpload(_ values: UnsafeBufferPointer<Float>, to buffer: Buffer, offset: Int) throws {
        let destination = pointer(buffer) + offset
        guard let source = values.baseAddress, !values.isEmpty else { return }
        destination.update(from: source, count: values.count)
    }

    public func uncheckedUpload(_ values: UnsafeBufferPointer<Int32>, to buffer: Buffer, offset: Int) throws {
        let destination = pointer(buffer) + offset
        guard let source = values.baseAddress, !values.isEmpty else { return }
        // Int32 and Float are both 4 bytes: the bits are stored as they are and read back as Int32 by the
        // operations that take index or label buffers.
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: 4 * values.count)
    }

    public func uncheckedDownload(_ buffer: Buffer, offset: Int,
                                  into values: UnsafeMutableBufferPointer<Float>) throws {
        blockingCounter.increment()
        let source = pointer(buffer) + offset
        guard let destination = values.baseAddress, !values.isEmpty else { return }
        destination.update(from: source, count: values.count)
    }

    public func uncheckedCopy(_ src: Buffer, srcOffset: Int, to dst: Buffer, dstOffset: Int, count: Int) throws {
        let source = pointer(src) + srcOffset
        let destination = pointer(dst) + dstOffset
        // The ranges are disjoint (`ArgumentCheck.disjoint`); copyMemory would also take overlapping ones.
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: 4 * count)
    }

    public func uncheckedFill(_ buffer: Buffer, value: Float, offset: Int, count: Int) throws {
        let destination = pointer(buffer) + offset
        // Split like the other loops: the model zero-fills [rows, hidden] gradient scratch every step, ~2% of an
        // fm-vit-c training step on one core (perf).
        parallelChunks(count, costPerItem: 1) { elements in
            (destination + elements.lowerBound).update(repeating: value, count: elements.count)
        }
    }

    public func synchronize() throws { blockingCounter.increment() }

    // MARK: Shared by the operation files

    /// The buffer's storage; a buffer of another backend is a programming error (see `Buffer`).
    @inline(__always)
    func storage(_ buffer: Buffer) -> CPUBuffer {
        guard let cpuBuffer = buffer as? CPUBuffer else {
            preconditionFailure("a \(type(of: buffer)) was handed to the CPU backend")
        }
        return cpuBuffer
    }

    /// The buffer's first element (the roles' entry points have checked the bounds).
    @inline(__always)
    func pointer(_ buffer: Buffer) -> UnsafeMutablePointer<Float> { storage(buffer).pointer }

    /// The elements of `buffer`, read as the Int32 they were uploaded as.
    func int32s(_ buffer: Buffer) -> Int32Elements { Int32Elements(raw: UnsafeRawPointer(pointer(buffer))) }

    /// The float64 values of `buffer` (2 float-sized elements each).
    func float64s(_ buffer: Buffer) -> Float64Elements {
        Float64Elements(raw: UnsafeMutableRawPointer(pointer(buffer)))
    }

    /// Calls `body` on contiguous chunks of `0 ..< items`, one chunk per worker when `items · costPerItem` is big
    /// enough to pay for the workers, else once with the whole range.
    func parallelChunks(_ items: Int, costPerItem: Int, _ body: (Range<Int>) -> Void) {
        parallelChunks(items, costPerItem: costPerItem) { _, chunk in body(chunk) }
    }

    /// As above, also passing the chunk's number (`0 ..< threads`), for per-worker partial results.
    func parallelChunks(_ items: Int, costPerItem: Int, _ body: (_ chunk: Int, Range<Int>) -> Void) {
        let workers = min(threads, items)
        guard workers > 1, items * max(1, costPerItem) >= parallelThreshold else {
            if items > 0 { body(0, 0 ..< items) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            body(worker, items * worker / workers ..< items * (worker + 1) / workers)
        }
    }
}

/// A CPU buffer: `count` floats in one 64-byte aligned allocation (a cache line, and an AVX-512 vector).
public final class CPUBuffer: Buffer {
    public let pointer: UnsafeMutablePointer<Float>

    override init(count: Int) {
        // One element at least, so that an empty buffer still has a valid pointer.
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 4 * max(1, count), alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(1, count))
        super.init(count: count)
    }

    deinit {
        pointer.deallocate()
    }
}

/// Int32 values stored in float memory. Raw loads are how Swift allows reading memory bound to `Float` as another
/// trivial type of the same size; `assumingMemoryBound(to: Int32.self)` would break its aliasing rules.
struct Int32Elements {
    let raw: UnsafeRawPointer

    @inline(__always)
    subscript(index: Int) -> Int32 { raw.load(fromByteOffset: 4 * index, as: Int32.self) }
}

/// Float64 values stored in float memory (column-statistics state), read and written with raw loads and stores.
/// The buffer's 64-byte alignment keeps every Double aligned.
struct Float64Elements {
    let raw: UnsafeMutableRawPointer

    @inline(__always)
    subscript(index: Int) -> Double {
        get { raw.load(fromByteOffset: 8 * index, as: Double.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 8 * index, as: Double.self) }
    }
}
