import CBLAS
import Dispatch

extension CPUBackend {
    /// Below this many multiply-accumulates a product runs on the calling thread: ~2.5·10⁵ MACs take ~20 µs on one
    /// core, several times what waking a second worker costs. Tests that split every loop (threshold 0) split every
    /// product too, so the block offsets are checked on odd sizes and every transpose.
    private var parallelGemmMacs: Int { parallelThreshold == 0 ? 0 : 1 << 18 }

    public func gemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        var single = spec
        single.batch = 1
        guard let operands = try gemmOperands(single, a: a, b: b, c: c, "gemm") else { return }
        let workers = min(threads, max(single.m, single.n))
        guard workers > 1, single.m * single.n * single.k >= parallelGemmMacs else {
            sgemm(single, operands.a, operands.b, operands.c)
            return
        }
        // OpenBLAS runs single-threaded (see `init`); the product is split into one block of C per worker, along
        // the longer of m and n (no split of k, so no reduction). Each block is an ordinary sgemm on a sub-matrix.
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var part = single
            var pointerA = operands.a
            var pointerB = operands.b
            var pointerC = operands.c
            if single.m >= single.n {
                let first = single.m * worker / workers
                part.m = single.m * (worker + 1) / workers - first
                pointerA += single.transA ? first : first * single.lda  // rows of op(A)
                pointerC += first * single.ldc
            } else {
                let first = single.n * worker / workers
                part.n = single.n * (worker + 1) / workers - first
                pointerB += single.transB ? first * single.ldb : first  // columns of op(B)
                pointerC += first
            }
            if part.m > 0, part.n > 0 { sgemm(part, pointerA, pointerB, pointerC) }
        }
    }

    public func gemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        guard let operands = try gemmOperands(spec, a: a, b: b, c: c, "gemmStridedBatched") else { return }
        let workers = min(threads, spec.batch)
        guard workers > 1, spec.m * spec.n * spec.k * spec.batch >= parallelGemmMacs else {
            for i in 0 ..< spec.batch {
                sgemm(spec, operands.a + i * spec.strideA, operands.b + i * spec.strideB, operands.c + i * spec.strideC)
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
                sgemm(spec, operands.a + i * spec.strideA, operands.b + i * spec.strideB, operands.c + i * spec.strideC)
            }
        }
    }

    /// Checks sizes, leading dimensions, strides and buffer bounds; returns the operands at their offsets, or nil
    /// when there is nothing to compute (m, n or batch is 0).
    private func gemmOperands(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer, _ operation: String) throws
        -> (a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>)?
    {
        try requireSizes(operation, ["m": spec.m, "n": spec.n, "k": spec.k, "batch": spec.batch,
                                     "offsetA": spec.offsetA, "offsetB": spec.offsetB, "offsetC": spec.offsetC,
                                     "strideA": spec.strideA, "strideB": spec.strideB, "strideC": spec.strideC])
        // Row-major leading dimensions must cover a stored row (and be ≥ 1, as BLAS requires).
        let rowA = spec.transA ? spec.m : spec.k
        let rowB = spec.transB ? spec.k : spec.n
        for (name, ld, row) in [("lda", spec.lda, rowA), ("ldb", spec.ldb, rowB), ("ldc", spec.ldc, spec.n)]
        where ld < max(1, row) {
            throw BackendError.invalidArgument("\(operation): \(name) \(ld) is smaller than a stored row (\(row))")
        }
        for (name, value) in [("m", spec.m), ("n", spec.n), ("k", spec.k), ("lda", spec.lda), ("ldb", spec.ldb),
                              ("ldc", spec.ldc)] where value > Int(Int32.max) {
            throw BackendError.invalidArgument("\(operation): \(name) \(value) does not fit OpenBLAS's 32-bit int")
        }
        guard spec.m > 0, spec.n > 0, spec.batch > 0 else { return nil }
        let pointerC = try range(c, count: spec.extentC, operation, "C (\(describe(spec)))")
        // With k = 0 the product is empty (C = beta·C) and A and B are not read.
        guard spec.k > 0 else {
            return (storage(a).pointer, storage(b).pointer, pointerC + spec.offsetC)
        }
        let pointerA = try range(a, count: spec.extentA, operation, "A (\(describe(spec)))")
        let pointerB = try range(b, count: spec.extentB, operation, "B (\(describe(spec)))")
        return (pointerA + spec.offsetA, pointerB + spec.offsetB, pointerC + spec.offsetC)
    }

    private func describe(_ spec: GemmSpec) -> String {
        let shape = "m \(spec.m), n \(spec.n), k \(spec.k), lda \(spec.lda), ldb \(spec.ldb), ldc \(spec.ldc)"
        return spec.batch == 1 ? shape : "\(shape), batch \(spec.batch)"
    }
}

/// One row-major `C = alpha·op(A)·op(B) + beta·C` through OpenBLAS, with the operands already at their offsets.
@inline(__always)
func sgemm(_ spec: GemmSpec, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                   _ c: UnsafeMutablePointer<Float>)
{
    cblas_sgemm(CblasRowMajor, spec.transA ? CblasTrans : CblasNoTrans, spec.transB ? CblasTrans : CblasNoTrans,
                blasInt(spec.m), blasInt(spec.n), blasInt(spec.k), spec.alpha, a, blasInt(spec.lda), b,
                blasInt(spec.ldb), spec.beta, c, blasInt(spec.ldc))
}

/// OpenBLAS's `blasint` (32-bit in Debian's build).
@inline(__always)
func blasInt(_ value: Int) -> blasint { blasint(value) }
