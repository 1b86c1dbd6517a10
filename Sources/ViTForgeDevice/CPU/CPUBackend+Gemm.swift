import CBLAS
import Dispatch

extension CPUBackend {
    /// Below this many multiply-accumulates a product runs on the calling thread: ~2.5·10⁵ MACs take ~20 µs on one
    /// core, several times what waking a second worker costs. Tests that split every loop (threshold 0) split every
    /// product too, so the block offsets are checked on odd sizes and every transpose.
    private var parallelGemmMacs: Int { parallelThreshold == 0 ? 0 : 1 << 18 }

    public func uncheckedGemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        var single = spec
        single.batch = 1
        let operands = try gemmOperands(single, a: a, b: b, c: c, "gemm")
        let workers = min(threads, max(single.m, single.n))
        guard workers > 1, single.m * single.n * single.k >= parallelGemmMacs else {
            library(for: single).run(single, operands.a, operands.b, operands.c)
            return
        }
        // The library runs single-threaded (see `init`, `vitforge_dnnl_sgemm`); the product is split into one block
        // of C per worker, along the longer of m and n (no split of k, so no reduction). Each block is an ordinary
        // sgemm on a sub-matrix. The library is the one for the first block's shape, what a worker runs (under
        // `auto` that is the shape timed), and the same for every block.
        let library = library(for: Self.block(single, worker: 0, of: workers).spec)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let block = Self.block(single, worker: worker, of: workers)
            if block.spec.m > 0, block.spec.n > 0 {
                library.run(block.spec, operands.a + block.a, operands.b + block.b, operands.c + block.c)
            }
        }
    }

    /// Worker `worker`'s block of `single` split over `workers` along the longer of m and n: its product and the
    /// element offsets of its operands.
    static func block(_ single: GemmSpec, worker: Int, of workers: Int) -> (spec: GemmSpec, a: Int, b: Int, c: Int) {
        var part = single
        if single.m >= single.n {
            let first = single.m * worker / workers
            part.m = single.m * (worker + 1) / workers - first
            return (part, single.transA ? first : first * single.lda, 0, first * single.ldc)  // rows of op(A)
        }
        let first = single.n * worker / workers
        part.n = single.n * (worker + 1) / workers - first
        return (part, 0, single.transB ? first * single.ldb : first, first)  // columns of op(B)
    }

    public func uncheckedGemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        let operands = try gemmOperands(spec, a: a, b: b, c: c, "gemmStridedBatched")
        let library = library(for: spec)
        let workers = min(threads, spec.batch)
        guard workers > 1, spec.m * spec.n * spec.k * spec.batch >= parallelGemmMacs else {
            for i in 0 ..< spec.batch {
                library.run(spec, operands.a + i * spec.strideA, operands.b + i * spec.strideB,
                            operands.c + i * spec.strideC)
            }
            return
        }
        // Attention's products (197×64·64×197) are too small for OpenBLAS to thread well: measured at
        // 192×(197×64·64×197) on 2 cores, one single-threaded OpenBLAS per Dispatch worker, each taking a contiguous
        // share of the batch, is about 2× faster than a loop of 2-threaded calls (REFERENCE.md §7.3, and the
        // numbers in this branch's report). The C matrices of a batch must not overlap (they are written
        // concurrently).
        let batch = spec.batch
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for i in batch * worker / workers ..< batch * (worker + 1) / workers {
                library.run(spec, operands.a + i * spec.strideA, operands.b + i * spec.strideB,
                            operands.c + i * spec.strideC)
            }
        }
    }

    /// The operands at their offsets (the entry point has checked the spec and the bounds, and called only with
    /// m, n and batch > 0), after the one limit of this backend: OpenBLAS takes 32-bit sizes (and so, for one
    /// result whichever library runs, does every library here).
    private func gemmOperands(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer, _ operation: String) throws
        -> (a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>)
    {
        for (name, value) in [("m", spec.m), ("n", spec.n), ("k", spec.k), ("lda", spec.lda), ("ldb", spec.ldb),
                              ("ldc", spec.ldc)] where value > Int(Int32.max) {
            throw BackendError.unsupported("\(operation): \(name) \(value) does not fit OpenBLAS's 32-bit int")
        }
        return (pointer(a) + spec.offsetA, pointer(b) + spec.offsetB, pointer(c) + spec.offsetC)
    }
}

extension CPUBackend {
    /// The library for a product of this shape: the pinned one, or the table's choice under `auto`.
    @inline(__always)
    func library(for spec: GemmSpec) -> GemmLibrary {
        switch gemm {
        case .pinned(let library): library
        case .auto: GemmChoiceTable.shared.library(for: spec)
        }
    }

    /// One row-major `C = alpha·op(A)·op(B) + beta·C` on the calling thread, with the operands already at their
    /// offsets (the fused attention's per-head products).
    @inline(__always)
    func sgemm(_ spec: GemmSpec, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        library(for: spec).run(spec, a, b, c)
    }
}

/// OpenBLAS's `blasint` (32-bit in Debian's build).
@inline(__always)
func blasInt(_ value: Int) -> blasint { blasint(value) }
