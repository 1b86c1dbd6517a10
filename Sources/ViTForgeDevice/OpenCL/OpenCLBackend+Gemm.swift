import COpenCL

/// Matrix products through CLBlast (an empty inner dimension through the `scale_matrices` kernel).
extension OpenCLBackend {
    // MARK: Matrix products

    public func uncheckedGemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        var single = spec
        single.batch = 1
        try uncheckedGemmStridedBatched(single, a: a, b: b, c: c)
    }

    public func uncheckedGemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        // The entry point has checked the spec and the bounds, and calls only with m, n and batch > 0.
        let cMemory = clMemory(c)
        if spec.k == 0 {
            // op(A)·op(B) is an m×n matrix of zeros: C = beta·C (beta == 1 leaves C as it is).
            if spec.beta == 1 { return }
            try launch(.scaleMatrices, global: spec.m * spec.n * spec.batch, [
                .buffer(cMemory), try .int(spec.offsetC, "offsetC"), try .int(spec.m, "m"), try .int(spec.n, "n"),
                try .int(spec.ldc, "ldc"), try .int(spec.strideC, "strideC"), try .int(spec.batch, "batch"),
                .float(spec.beta),
            ])
            return
        }
        let aMemory = clMemory(a)
        let bMemory = clMemory(b)
        let transA = spec.transA ? CLBlastTransposeYes : CLBlastTransposeNo
        let transB = spec.transB ? CLBlastTransposeYes : CLBlastTransposeNo
        var queue = self.queue
        let call = spec.batch == 1 ? "CLBlastSgemm" : "CLBlastSgemmStridedBatched"
        // With a profiling queue CLBlast hands back the event of its (last) kernel. Named by shape, so that a
        // profile tells the model's GEMMs apart.
        var event: cl_event? = nil
        let profiled = eventLog != nil
        let status: CLBlastStatusCode = withUnsafeMutablePointer(to: &event) { eventPointer in
            let eventOut = profiled ? eventPointer : nil
            return clblastLock.withLock {
                // A batch of one goes through plain Sgemm: the strided-batched routine is a separate program, and
                // each CLBlast program costs seconds of compilation the first time on some drivers.
                if spec.batch == 1 {
                    return CLBlastSgemm(CLBlastLayoutRowMajor, transA, transB, spec.m, spec.n, spec.k, spec.alpha,
                                        aMemory, spec.offsetA, spec.lda, bMemory, spec.offsetB, spec.ldb, spec.beta,
                                        cMemory, spec.offsetC, spec.ldc, &queue, eventOut)
                }
                return CLBlastSgemmStridedBatched(
                    CLBlastLayoutRowMajor, transA, transB, spec.m, spec.n, spec.k, spec.alpha,
                    aMemory, spec.offsetA, spec.lda, spec.strideA, bMemory, spec.offsetB, spec.ldb, spec.strideB,
                    spec.beta, cMemory, spec.offsetC, spec.ldc, spec.strideC, spec.batch, &queue, eventOut)
            }
        }
        if status != CLBlastSuccess { throw BackendError.clblast(call: call, status: status.rawValue) }
        if let eventLog {
            let shape = "\(spec.m)x\(spec.n)x\(spec.k)" + (spec.batch == 1 ? "" : " x\(spec.batch)")
            eventLog.record("sgemm \(spec.transA ? "T" : "N")\(spec.transB ? "T" : "N") \(shape)", event)
        }
    }
}
