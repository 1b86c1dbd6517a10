import COpenCL

/// Matrix products through CLBlast (an empty inner dimension through the `scale_matrices` kernel).
extension OpenCLBackend {
    // MARK: Matrix products

    public func gemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        var single = spec
        single.batch = 1
        try gemmStridedBatched(single, a: a, b: b, c: c, operation: "gemm")
    }

    public func gemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        try gemmStridedBatched(spec, a: a, b: b, c: c, operation: "gemmStridedBatched")
    }

    func gemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer, operation: String) throws {
        guard spec.m >= 0, spec.n >= 0, spec.k >= 0, spec.batch >= 0 else {
            throw BackendError.invalidArgument(
                "\(operation): negative size m=\(spec.m) n=\(spec.n) k=\(spec.k) batch=\(spec.batch)")
        }
        guard spec.offsetA >= 0, spec.offsetB >= 0, spec.offsetC >= 0,
              spec.strideA >= 0, spec.strideB >= 0, spec.strideC >= 0
        else { throw BackendError.invalidArgument("\(operation): negative offset or stride in \(spec)") }
        // An empty C (or an empty batch) is nothing to do; CLBlast would reject the zero dimension.
        if spec.m == 0 || spec.n == 0 || spec.batch == 0 { return }
        let cMemory = try gemmOperand(c, "C", spec.extentC, operation)
        guard spec.ldc >= spec.n else { throw BackendError.invalidArgument("\(operation): ldc=\(spec.ldc) < n=\(spec.n)") }
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
        let widthA = spec.transA ? spec.m : spec.k, widthB = spec.transB ? spec.k : spec.n
        guard spec.lda >= widthA else {
            throw BackendError.invalidArgument(
                "\(operation): lda=\(spec.lda) < \(widthA), the row length of A as stored\(spec.transA ? " (transposed)" : "")")
        }
        guard spec.ldb >= widthB else {
            throw BackendError.invalidArgument(
                "\(operation): ldb=\(spec.ldb) < \(widthB), the row length of B as stored\(spec.transB ? " (transposed)" : "")")
        }
        let aMemory = try gemmOperand(a, "A", spec.extentA, operation)
        let bMemory = try gemmOperand(b, "B", spec.extentB, operation)
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

    func gemmOperand(_ buffer: Buffer, _ label: String, _ extent: Int, _ operation: String) throws -> cl_mem {
        let memory = try openCLBuffer(buffer)
        guard extent <= buffer.count else {
            throw BackendError.invalidArgument(
                "\(operation): \(label) holds \(buffer.count) elements but the product reaches element \(extent)")
        }
        return memory
    }
}
