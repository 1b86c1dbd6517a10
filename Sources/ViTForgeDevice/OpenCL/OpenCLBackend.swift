import COpenCL
import Kernels
#if canImport(Glibc)
import Glibc
import ViTForgeSupport
#endif

/// Device memory of an `OpenCLBackend`: one `cl_mem`, released when the last reference goes.
public final class OpenCLBuffer: Buffer {
    let memory: cl_mem
    /// The context that owns `memory`; a buffer is only usable on backends of that context.
    let context: cl_context

    init(memory: cl_mem, context: cl_context, count: Int) {
        self.memory = memory
        self.context = context
        super.init(count: count)
    }

    deinit { clReleaseMemObject(memory) }
}

/// The OpenCL implementation of `Backend`: GEMMs through CLBlast, every other operation through the hand-written
/// kernels of `Kernels/*.cl`, all enqueued in order on the device's one queue.
///
/// Calls from several threads are safe (the test suite runs its cases in parallel): setting a kernel's arguments
/// and enqueueing it happen under `launchLock`, because `cl_kernel` arguments are shared state, and a reduction's
/// launch and read-back under `reductionLock`, because its partial sums live in one scratch buffer. Operations from
/// different threads interleave on the one in-order queue. Several backends on the same device share its context,
/// queue and built program.
public final class OpenCLBackend: Backend {
    public let name: String
    public var kind: BackendKind { .openCL }
    public let device: OpenCLDeviceInfo
    /// Which of an operation's kernel variants this backend launches (see `OpenCLKernelShape`).
    public let kernelShape: OpenCLKernelShape

    /// `-cl-fast-relaxed-math` would make the exp-heavy kernels (softmax, losses, GELU) 3–4x faster on PoCL, but it
    /// also lets the compiler reassociate the float64 reductions and assume no NaN/Inf, which breaks the NaN
    /// signalling of bad labels/indices and the −Inf start of the row maxima.
    static let buildOptions = "-cl-std=CL1.2 -cl-mad-enable"
    /// One fixed local size for every kernel: PoCL compiles a kernel again for every new local size.
    static let localSize = 64
    /// Work-groups of the float64 sum: enough to fill a large GPU, few enough that the host sums the partials in
    /// microseconds.
    static let reductionGroups = 256

    private let shared: OpenCLDeviceContext
    private var queue: cl_command_queue? { shared.queue }
    private let kernels: [KernelName: cl_kernel]
    private var localSizes: [KernelName: Int] = [:]
    /// The arguments each kernel was last launched with (under `launchLock`): a launch sets only those that changed,
    /// so a kernel called again on the same buffers (every block, every step) costs no `clSetKernelArg` at all.
    /// Buffer arguments are retained while cached, so a released buffer's handle cannot be reused by a new buffer
    /// and compare equal.
    private var boundArguments: [KernelName: [KernelArgument]] = [:]
    /// How many `clSetKernelArg` calls launches have made (a test counter).
    private(set) var kernelArgumentsSet = 0
    /// Float64 partial sums of `sum`/`sumOfSquares` (`reductionGroups` doubles), allocated on first use.
    private var reductionPartials: OpenCLBuffer?
    private let launchLock = ProcessLock()
    private let blockingCounter = CallCounter()
    public var blockingCalls: Int { blockingCounter.count }
    private let reductionLock = ProcessLock()
    /// The per-tile partial sums of the two-stage column reductions (bias, LayerNorm γ/β, mask gradients, column
    /// statistics; grown as needed), used between an operation's two stages under `columnPartialsLock`.
    private var columnPartials: OpenCLBuffer?
    private let columnPartialsLock = ProcessLock()
    /// The fused attention's per-head tables (one per block layout met, uploaded once) and its backward's
    /// [items, tokens] D = dO·O scratch, under `attentionLock`.
    var attentionHeadTables: [QKVLayout: OpenCLBuffer] = [:]
    var attentionDelta: OpenCLBuffer?
    let attentionLock = ProcessLock()
    /// Rows each work-item of a column reduction's first stage sums: 12,608 rows (DeiT at batch 64) become 197
    /// tiles, i.e. 197 × cols work-items instead of cols long chains.
    static let columnTileRows = 64

    enum KernelName: String, CaseIterable {
        case addBias = "add_bias", add, axpy, scale
        case scaleMatrices = "scale_matrices", gather, scatterAdd = "scatter_add"
        case layerNormForward = "layernorm_forward", layerNormBackwardInput = "layernorm_backward_input"
        case maskedLayerNormForward = "masked_layernorm_forward"
        case maskedLayerNormBackwardInput = "masked_layernorm_backward_input"
        case softmaxForward = "softmax_forward", softmaxBackward = "softmax_backward"
        case biasGeluForward = "bias_gelu_forward", biasGeluBackward = "bias_gelu_backward"
        case crossEntropyForward = "cross_entropy_forward", crossEntropyBackward = "cross_entropy_backward"
        case distillationForward = "distillation_forward", distillationBackward = "distillation_backward"
        // The GPU shapes of the row operations: one work-group per row (`launchRows`).
        case layerNormForwardWG = "layernorm_forward_wg", layerNormBackwardInputWG = "layernorm_backward_input_wg"
        case maskedLayerNormForwardWG = "masked_layernorm_forward_wg"
        case maskedLayerNormBackwardInputWG = "masked_layernorm_backward_input_wg"
        case softmaxForwardWG = "softmax_forward_wg", softmaxBackwardWG = "softmax_backward_wg"
        case crossEntropyForwardWG = "cross_entropy_forward_wg", distillationForwardWG = "distillation_forward_wg"
        // Two-stage column reductions (`withColumnPartials`).
        case columnSumPartials = "column_sum_partials", layerNormParamsPartials = "layernorm_params_partials"
        case columnPartialsCombine = "column_partials_combine"
        case columnStatisticsPartials = "column_statistics_partials"
        case columnStatisticsCombine = "column_statistics_combine"
        case sumPartials = "sum_partials"
        case adamwStep = "adamw_step", matVec = "mat_vec", matVecTransposed = "mat_vec_transposed"
        case scaleColumns = "scale_columns", maskGradientPartials = "mask_gradient_partials"
        case scaleRows = "scale_rows"
        case maskGradientRows = "mask_gradient_rows", segmentSum = "segment_sum"
        case addScaledSign = "add_scaled_sign", symmetricEigen = "symmetric_eigen"
        case attentionForwardRows = "attention_forward_rows", attentionForwardTiled = "attention_forward_tiled"
        case attentionBackwardDQRows = "attention_backward_dq_rows"
        case attentionBackwardDKVRows = "attention_backward_dkv_rows"
        case attentionBackwardDQTiled = "attention_backward_dq_tiled"
        case attentionBackwardDKVTiled = "attention_backward_dkv_tiled"
        case accumulatePartials = "accumulate_partials", clipScale = "clip_scale"

        /// Compiled only where the device has cl_khr_fp64 (statistics.cl, bookkeeping.cl).
        var needsFloat64: Bool {
            switch self {
            case .columnStatisticsPartials, .columnStatisticsCombine, .sumPartials, .accumulatePartials, .clipScale:
                return true
            default: return false
            }
        }
    }

    /// - Parameter kernelSources: the OpenCL C files to build, in order; nil means the `.cl` files of
    ///   `$VITFORGE_KERNEL_DIR` when that is set (kernel development without a rebuild), else the embedded ones.
    /// - Parameter kernelShape: nil chooses by device type (`OpenCLKernelShape.forDevice`); tests force `.gpu` on
    ///   PoCL to check the GPU-shaped kernels without a GPU.
    public init(device: OpenCLDeviceInfo, kernelSources: [(name: String, source: String)]? = nil,
                kernelShape: OpenCLKernelShape? = nil) throws {
        self.device = device
        let shape = try kernelShape ?? OpenCLKernelShape.forDevice(device)
        self.kernelShape = shape
        let shapeNote = shape == OpenCLKernelShape.natural(for: device) ? "" : ", \(shape.rawValue)-shaped kernels"
        name = "\(device.spec) \(device.name) (\(device.platformName)\(shapeNote))"
        shared = try OpenCLDeviceContext.shared(for: device)
        let sources = try kernelSources ?? Self.kernelDirectorySources() ?? KernelSources.files
        let program = try shared.program(sources: sources, options: Self.buildOptions)
        var kernels: [KernelName: cl_kernel] = [:]
        do {
            for kernel in KernelName.allCases where device.supportsFloat64 || !kernel.needsFloat64 {
                var status: cl_int = CL_SUCCESS
                guard let created = clCreateKernel(program, kernel.rawValue, &status), status == CL_SUCCESS else {
                    throw BackendError.openCL(call: "clCreateKernel(\(kernel.rawValue))", code: status)
                }
                kernels[kernel] = created
            }
        } catch {
            for created in kernels.values { clReleaseKernel(created) }
            throw error
        }
        self.kernels = kernels
    }

    deinit {
        for kernel in kernels.values { clReleaseKernel(kernel) }
        for arguments in boundArguments.values { Self.releaseBuffers(arguments) }
    }

    private static func releaseBuffers(_ arguments: [KernelArgument]) {
        for case let .buffer(memory) in arguments { clReleaseMemObject(memory) }
    }

    /// The `.cl` files of `$VITFORGE_KERNEL_DIR`: the embedded files' names in their order first, then any others
    /// alphabetically. nil when the variable is unset.
    static func kernelDirectorySources() throws -> [(name: String, source: String)]? {
        guard let value = getenv("VITFORGE_KERNEL_DIR"), value.pointee != 0 else { return nil }
        let directory = String(cString: value)
        guard let handle = opendir(directory) else {
            throw BackendError.invalidArgument("VITFORGE_KERNEL_DIR=\(directory): cannot open the folder")
        }
        var names: [String] = []
        while let entry = readdir(handle) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if entryName.hasSuffix(".cl") { names.append(entryName) }
        }
        closedir(handle)
        let order = KernelSources.files.map(\.name)
        names.sort { left, right in
            switch (order.firstIndex(of: left), order.firstIndex(of: right)) {
            case let (l?, r?): return l < r
            case (.some, nil): return true
            case (nil, .some): return false
            case (nil, nil): return left < right
            }
        }
        if names.isEmpty {
            throw BackendError.invalidArgument("VITFORGE_KERNEL_DIR=\(directory): no .cl files there")
        }
        return try names.map { (name: $0, source: try readTextFile(directory + "/" + $0)) }
    }

    private static func readTextFile(_ path: String) throws -> String {
        guard let file = fopen(path, "rb") else { throw BackendError.invalidArgument("cannot read \(path)") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = fread(&chunk, 1, chunk.count, file)
            if got == 0 { break }
            bytes += chunk[0 ..< got]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Buffers

    public func allocate(_ count: Int) throws -> Buffer {
        guard count >= 0 else { throw BackendError.invalidArgument("allocate: negative element count \(count)") }
        var status: cl_int = CL_SUCCESS
        // OpenCL has no empty buffers; a zero-element Buffer still owns a 4-byte cl_mem.
        guard let memory = clCreateBuffer(shared.context, cl_mem_flags(CL_MEM_READ_WRITE), max(count, 1) * 4, nil,
                                          &status), status == CL_SUCCESS
        else { throw BackendError.openCL(call: "clCreateBuffer", code: status) }
        return OpenCLBuffer(memory: memory, context: shared.context, count: count)
    }

    public func upload(_ values: UnsafeBufferPointer<Float>, to buffer: Buffer, offset: Int) throws {
        try upload(UnsafeRawBufferPointer(values), to: buffer, offset: offset, count: values.count)
    }

    public func upload(_ values: UnsafeBufferPointer<Int32>, to buffer: Buffer, offset: Int) throws {
        try upload(UnsafeRawBufferPointer(values), to: buffer, offset: offset, count: values.count)
    }

    private func upload(_ bytes: UnsafeRawBufferPointer, to buffer: Buffer, offset: Int, count: Int) throws {
        let memory = try checked(buffer, "upload", "destination", offset: offset, count: count)
        guard count > 0, let base = bytes.baseAddress else { return }
        // Blocking: the caller's pointer is only valid during this call.
        try checkCL(clEnqueueWriteBuffer(queue, memory, cl_bool(CL_TRUE), offset * 4, count * 4, base, 0, nil, nil),
                    "clEnqueueWriteBuffer")
    }

    var contextForStaging: cl_context { shared.context }
    var queueForStaging: cl_command_queue { shared.queue }

    func checkedForUpload(_ buffer: Buffer, offset: Int, count: Int) throws -> cl_mem {
        try checked(buffer, "uploadAsync", "destination", offset: offset, count: count)
    }

    public func download(_ buffer: Buffer, offset: Int, into values: UnsafeMutableBufferPointer<Float>) throws {
        blockingCounter.increment()
        let memory = try checked(buffer, "download", "source", offset: offset, count: values.count)
        guard values.count > 0, let base = values.baseAddress else { return }
        try checkCL(clEnqueueReadBuffer(queue, memory, cl_bool(CL_TRUE), offset * 4, values.count * 4, base, 0, nil,
                                        nil), "clEnqueueReadBuffer")
    }

    public func copy(_ src: Buffer, srcOffset: Int, to dst: Buffer, dstOffset: Int, count: Int) throws {
        let source = try checked(src, "copy", "source", offset: srcOffset, count: count)
        let destination = try checked(dst, "copy", "destination", offset: dstOffset, count: count)
        guard count > 0 else { return }
        if src === dst && srcOffset < dstOffset + count && dstOffset < srcOffset + count {
            throw BackendError.invalidArgument(
                "copy: source [\(srcOffset), \(srcOffset + count)) and destination [\(dstOffset), "
                    + "\(dstOffset + count)) overlap in the same buffer")
        }
        try checkCL(clEnqueueCopyBuffer(queue, source, destination, srcOffset * 4, dstOffset * 4, count * 4, 0, nil,
                                        nil), "clEnqueueCopyBuffer")
    }

    public func fill(_ buffer: Buffer, value: Float, offset: Int, count: Int) throws {
        let memory = try checked(buffer, "fill", "buffer", offset: offset, count: count)
        guard count > 0 else { return }
        var pattern = value
        try checkCL(clEnqueueFillBuffer(queue, memory, &pattern, 4, offset * 4, count * 4, 0, nil, nil),
                    "clEnqueueFillBuffer")
    }

    public func synchronize() throws {
        blockingCounter.increment()
        try checkCL(clFinish(queue), "clFinish")
    }

    // MARK: Matrix products

    public func gemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        var single = spec
        single.batch = 1
        try gemmStridedBatched(single, a: a, b: b, c: c, operation: "gemm")
    }

    public func gemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws {
        try gemmStridedBatched(spec, a: a, b: b, c: c, operation: "gemmStridedBatched")
    }

    private func gemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer, operation: String) throws {
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
        let status: CLBlastStatusCode = clblastLock.withLock {
            // A batch of one goes through plain Sgemm: the strided-batched routine is a separate program, and each
            // CLBlast program costs seconds of compilation the first time on some drivers.
            if spec.batch == 1 {
                return CLBlastSgemm(CLBlastLayoutRowMajor, transA, transB, spec.m, spec.n, spec.k, spec.alpha,
                                    aMemory, spec.offsetA, spec.lda, bMemory, spec.offsetB, spec.ldb, spec.beta,
                                    cMemory, spec.offsetC, spec.ldc, &queue, nil)
            }
            return CLBlastSgemmStridedBatched(
                CLBlastLayoutRowMajor, transA, transB, spec.m, spec.n, spec.k, spec.alpha,
                aMemory, spec.offsetA, spec.lda, spec.strideA, bMemory, spec.offsetB, spec.ldb, spec.strideB,
                spec.beta, cMemory, spec.offsetC, spec.ldc, spec.strideC, spec.batch, &queue, nil)
        }
        if status != CLBlastSuccess { throw BackendError.clblast(call: call, status: status.rawValue) }
    }

    private func gemmOperand(_ buffer: Buffer, _ label: String, _ extent: Int, _ operation: String) throws -> cl_mem {
        let memory = try openCLBuffer(buffer)
        guard extent <= buffer.count else {
            throw BackendError.invalidArgument(
                "\(operation): \(label) holds \(buffer.count) elements but the product reaches element \(extent)")
        }
        return memory
    }

    // MARK: Elementwise and row operations

    public func addBias(_ x: Buffer, bias: Buffer, rows: Int, cols: Int) throws {
        let count = try size(rows, cols, "addBias")
        try launch(.addBias, columns: cols, rows: rows, [
            .buffer(try checked(x, "addBias", "x", count: count)),
            .buffer(try checked(bias, "addBias", "bias", count: cols)), try .int(rows), try .int(cols),
        ])
    }

    public func addBiasBackward(dOut: Buffer, dBias: Buffer, rows: Int, cols: Int) throws {
        let op = "addBiasBackward"
        let count = try size(rows, cols, op)
        let dOutMemory = try checked(dOut, op, "dOut", count: count)
        let dBiasMemory = try checked(dBias, op, "dBias", count: cols)
        let tiles = columnTiles(rows)
        try withColumnPartials(floats: tiles * cols, rows: rows, cols: cols) { partials in
            try launch(.columnSumPartials, columns: cols, rows: tiles, [
                .buffer(dOutMemory), try .int(rows), try .int(cols), try .int(Self.columnTileRows), .buffer(partials),
            ])
            try combineColumnPartials(partials, first: 0, tiles: tiles, cols: cols, keep: nil, into: dBiasMemory)
        }
    }

    public func add(_ a: Buffer, _ b: Buffer, out: Buffer, count: Int) throws {
        try launch(.add, global: count, [
            .buffer(try checked(a, "add", "a", count: count)), .buffer(try checked(b, "add", "b", count: count)),
            .buffer(try checked(out, "add", "out", count: count)), try .int(count),
        ])
    }

    public func axpy(alpha: Float, x: Buffer, y: Buffer, count: Int) throws {
        try launch(.axpy, global: count, [
            .float(alpha), .buffer(try checked(x, "axpy", "x", count: count)),
            .buffer(try checked(y, "axpy", "y", count: count)), try .int(count),
        ])
    }

    public func scale(_ x: Buffer, by alpha: Float, count: Int) throws {
        try launch(.scale, global: count, [
            .buffer(try checked(x, "scale", "x", count: count)), .float(alpha), try .int(count),
        ])
    }

    public func layerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer,
                                 rows: Int, cols: Int, eps: Float) throws {
        let op = "layerNormForward"
        let count = try size(rows, cols, op)
        try launchRows(.layerNormForward, .layerNormForwardWG, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(gamma, op, "gamma", count: cols)),
            .buffer(try checked(beta, op, "beta", count: cols)), .buffer(try checked(out, op, "out", count: count)),
            .buffer(try checked(mean, op, "mean", count: rows)), .buffer(try checked(rstd, op, "rstd", count: rows)),
            try .int(rows), try .int(cols), .float(eps),
        ])
    }

    public func layerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, mean: Buffer, rstd: Buffer,
                                  dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws {
        let op = "layerNormBackward"
        let count = try size(rows, cols, op)
        let dOutMemory = try checked(dOut, op, "dOut", count: count), xMemory = try checked(x, op, "x", count: count)
        let meanMemory = try checked(mean, op, "mean", count: rows)
        let rstdMemory = try checked(rstd, op, "rstd", count: rows)
        try launchRows(.layerNormBackwardInput, .layerNormBackwardInputWG, rows: rows, [
            .buffer(dOutMemory), .buffer(xMemory), .buffer(try checked(gamma, op, "gamma", count: cols)),
            .buffer(meanMemory), .buffer(rstdMemory), .buffer(try checked(dX, op, "dX", count: count)),
            try .int(rows), try .int(cols),
        ])
        try layerNormParamsBackward(dOut: dOutMemory, x: xMemory, keep: nil, mean: meanMemory, rstd: rstdMemory,
                                    dGamma: try checked(dGamma, op, "dGamma", count: cols),
                                    dBeta: try checked(dBeta, op, "dBeta", count: cols), rows: rows, cols: cols)
    }

    /// dGamma and dBeta (sums over rows) as a two-stage column reduction; `keep` leaves the masked LayerNorm's
    /// removed columns alone.
    private func layerNormParamsBackward(dOut: cl_mem, x: cl_mem, keep: cl_mem?, mean: cl_mem, rstd: cl_mem,
                                         dGamma: cl_mem, dBeta: cl_mem, rows: Int, cols: Int) throws {
        let tiles = columnTiles(rows)
        try withColumnPartials(floats: 2 * tiles * cols, rows: rows, cols: cols) { partials in
            try launch(.layerNormParamsPartials, columns: cols, rows: tiles, [
                .buffer(dOut), .buffer(x), .buffer(mean), .buffer(rstd), try .int(rows), try .int(cols),
                try .int(Self.columnTileRows), .buffer(partials),
            ])
            try combineColumnPartials(partials, first: 0, tiles: tiles, cols: cols, keep: keep, into: dGamma)
            try combineColumnPartials(partials, first: tiles * cols, tiles: tiles, cols: cols, keep: keep,
                                      into: dBeta)
        }
    }

    public func maskedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, keep: Buffer, out: Buffer,
                                       mean: Buffer, rstd: Buffer, rows: Int, cols: Int, eps: Float) throws {
        let op = "maskedLayerNormForward"
        let count = try size(rows, cols, op)
        try launchRows(.maskedLayerNormForward, .maskedLayerNormForwardWG, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(gamma, op, "gamma", count: cols)),
            .buffer(try checked(beta, op, "beta", count: cols)), .buffer(try checked(keep, op, "keep", count: cols)),
            .buffer(try checked(out, op, "out", count: count)), .buffer(try checked(mean, op, "mean", count: rows)),
            .buffer(try checked(rstd, op, "rstd", count: rows)), try .int(rows), try .int(cols), .float(eps),
        ])
    }

    public func maskedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, keep: Buffer, mean: Buffer,
                                        rstd: Buffer, dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int,
                                        cols: Int) throws {
        let op = "maskedLayerNormBackward"
        let count = try size(rows, cols, op)
        let dOutMemory = try checked(dOut, op, "dOut", count: count), xMemory = try checked(x, op, "x", count: count)
        let keepMemory = try checked(keep, op, "keep", count: cols)
        let meanMemory = try checked(mean, op, "mean", count: rows)
        let rstdMemory = try checked(rstd, op, "rstd", count: rows)
        try launchRows(.maskedLayerNormBackwardInput, .maskedLayerNormBackwardInputWG, rows: rows, [
            .buffer(dOutMemory), .buffer(xMemory), .buffer(try checked(gamma, op, "gamma", count: cols)),
            .buffer(keepMemory), .buffer(meanMemory), .buffer(rstdMemory),
            .buffer(try checked(dX, op, "dX", count: count)), try .int(rows), try .int(cols),
        ])
        try layerNormParamsBackward(dOut: dOutMemory, x: xMemory, keep: keepMemory, mean: meanMemory,
                                    rstd: rstdMemory, dGamma: try checked(dGamma, op, "dGamma", count: cols),
                                    dBeta: try checked(dBeta, op, "dBeta", count: cols), rows: rows, cols: cols)
    }

    public func softmaxForward(x: Buffer, out: Buffer, rows: Int, cols: Int, scale: Float) throws {
        let op = "softmaxForward"
        let count = try size(rows, cols, op)
        try launchRows(.softmaxForward, .softmaxForwardWG, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(out, op, "out", count: count)),
            try .int(rows), try .int(cols), .float(scale),
        ])
    }

    public func softmaxBackward(dOut: Buffer, out: Buffer, dX: Buffer, rows: Int, cols: Int, scale: Float) throws {
        let op = "softmaxBackward"
        let count = try size(rows, cols, op)
        try launchRows(.softmaxBackward, .softmaxBackwardWG, rows: rows, [
            .buffer(try checked(dOut, op, "dOut", count: count)), .buffer(try checked(out, op, "out", count: count)),
            .buffer(try checked(dX, op, "dX", count: count)), try .int(rows), try .int(cols), .float(scale),
        ])
    }

    public func biasGeluForward(x: Buffer, bias: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let op = "biasGeluForward"
        let count = try size(rows, cols, op)
        try launch(.biasGeluForward, columns: cols, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(bias, op, "bias", count: cols)),
            .buffer(try checked(out, op, "out", count: count)), try .int(rows), try .int(cols),
        ])
    }

    public func biasGeluBackward(dOut: Buffer, x: Buffer, bias: Buffer, dX: Buffer, rows: Int, cols: Int) throws {
        let op = "biasGeluBackward"
        let count = try size(rows, cols, op)
        try launch(.biasGeluBackward, columns: cols, rows: rows, [
            .buffer(try checked(dOut, op, "dOut", count: count)), .buffer(try checked(x, op, "x", count: count)),
            .buffer(try checked(bias, op, "bias", count: cols)), .buffer(try checked(dX, op, "dX", count: count)),
            try .int(rows), try .int(cols),
        ])
    }

    // MARK: Losses

    public func crossEntropyForward(logits: Buffer, labels: Buffer, probs: Buffer, losses: Buffer,
                                    rows: Int, classes: Int, smoothing: Float) throws {
        let op = "crossEntropyForward"
        let count = try size(rows, classes, op)
        try launchRows(.crossEntropyForward, .crossEntropyForwardWG, rows: rows, [
            .buffer(try checked(logits, op, "logits", count: count)),
            .buffer(try checked(labels, op, "labels", count: rows)),
            .buffer(try checked(probs, op, "probs", count: count)),
            .buffer(try checked(losses, op, "losses", count: rows)), try .int(rows), try .int(classes),
            .float(smoothing),
        ])
    }

    public func crossEntropyBackward(probs: Buffer, labels: Buffer, dLogits: Buffer,
                                     rows: Int, classes: Int, smoothing: Float, scale: Float) throws {
        let op = "crossEntropyBackward"
        let count = try size(rows, classes, op)
        try launch(.crossEntropyBackward, columns: classes, rows: rows, [
            .buffer(try checked(probs, op, "probs", count: count)),
            .buffer(try checked(labels, op, "labels", count: rows)),
            .buffer(try checked(dLogits, op, "dLogits", count: count)), try .int(rows), try .int(classes),
            .float(smoothing), .float(scale),
        ])
    }

    public func distillationForward(student: Buffer, teacher: Buffer, studentProbs: Buffer, teacherProbs: Buffer,
                                    losses: Buffer, rows: Int, classes: Int, temperature: Float) throws {
        let op = "distillationForward"
        let count = try size(rows, classes, op)
        guard temperature > 0 else { throw BackendError.invalidArgument("\(op): temperature \(temperature) ≤ 0") }
        try launchRows(.distillationForward, .distillationForwardWG, rows: rows, [
            .buffer(try checked(student, op, "student", count: count)),
            .buffer(try checked(teacher, op, "teacher", count: count)),
            .buffer(try checked(studentProbs, op, "studentProbs", count: count)),
            .buffer(try checked(teacherProbs, op, "teacherProbs", count: count)),
            .buffer(try checked(losses, op, "losses", count: rows)), try .int(rows), try .int(classes),
            .float(temperature),
        ])
    }

    public func distillationBackward(studentProbs: Buffer, teacherProbs: Buffer, dStudent: Buffer,
                                     rows: Int, classes: Int, temperature: Float, scale: Float) throws {
        let op = "distillationBackward"
        let count = try size(rows, classes, op)
        try launch(.distillationBackward, global: count, [
            .buffer(try checked(studentProbs, op, "studentProbs", count: count)),
            .buffer(try checked(teacherProbs, op, "teacherProbs", count: count)),
            .buffer(try checked(dStudent, op, "dStudent", count: count)), try .int(count),
            .float(scale * temperature),
        ])
    }

    // MARK: Statistics and reductions

    public func columnStatisticsAccumulate(x: Buffer, rows: Int, cols: Int, state: Buffer, countBefore: Int) throws {
        let op = "columnStatisticsAccumulate"
        try requireFloat64(op)
        let count = try size(rows, cols, op)
        guard countBefore >= 0 else { throw BackendError.invalidArgument("\(op): countBefore \(countBefore) < 0") }
        let xMemory = try checked(x, op, "x", count: count)
        let stateMemory = try checked(state, op, "state", count: ColumnStatistics.stateCount(cols))
        if rows == 0 { return }
        let tiles = columnTiles(rows)
        // Float64 partials: a mean and an M2 per (tile, column), two floats of scratch each.
        try withColumnPartials(floats: 4 * tiles * cols, rows: rows, cols: cols) { partials in
            try launch(.columnStatisticsPartials, columns: cols, rows: tiles, [
                .buffer(xMemory), try .int(rows), try .int(cols), try .int(Self.columnTileRows), .buffer(partials),
            ])
            try launch(.columnStatisticsCombine, global: cols, [
                .buffer(partials), try .int(rows), try .int(cols), try .int(Self.columnTileRows),
                .buffer(stateMemory), .long(Int64(countBefore)),
            ])
        }
    }

    public func sum(_ x: Buffer, count: Int) throws -> Double {
        try reduce(x, count: count, mode: 0, operation: "sum")
    }

    public func sumOfSquares(_ x: Buffer, count: Int) throws -> Double {
        try reduce(x, count: count, mode: 1, operation: "sumOfSquares")
    }

    public func sumOfAbs(_ x: Buffer, count: Int) throws -> Double {
        try reduce(x, count: count, mode: 2, operation: "sumOfAbs")
    }

    /// mode: 0 Σx, 1 Σx², 2 Σ|x| (`sum_partials`).
    private func reduce(_ x: Buffer, count: Int, mode: Int32, operation: String) throws -> Double {
        blockingCounter.increment()
        try requireFloat64(operation)
        let xMemory = try checked(x, operation, "x", count: count)
        if count == 0 { return 0 }
        return try reductionLock.withLock { try reduceLocked(xMemory, count: count, mode: mode) }
    }

    private func reduceLocked(_ xMemory: cl_mem, count: Int, mode: Int32) throws -> Double {
        let (partials, groups) = try launchSumPartials(xMemory, count: count, mode: mode)
        var values = [Double](repeating: 0, count: groups)
        try checkCL(clEnqueueReadBuffer(queue, partials, cl_bool(CL_TRUE), 0, groups * 8, &values, 0, nil, nil),
                    "clEnqueueReadBuffer")
        return values.reduce(0, +)
    }

    /// Enqueues the first stage of a float64 reduction: one partial sum per work-group into `reductionPartials`.
    /// Called under `reductionLock`; the in-order queue keeps the next user of the partials behind every reader.
    private func launchSumPartials(_ xMemory: cl_mem, count: Int, mode: Int32) throws -> (cl_mem, groups: Int) {
        let groups = min(Self.reductionGroups, (count + Self.localSize - 1) / Self.localSize)
        // Two float elements per double.
        let partials = try scratchBuffer(&reductionPartials, floats: 2 * Self.reductionGroups)
        try launch(.sumPartials, global: groups * Self.localSize, [
            .buffer(xMemory), try .int(count), .int32(mode), .buffer(partials),
        ])
        return (partials, groups)
    }

    public func accumulateSum(_ x: Buffer, count: Int, squares: Bool, weights: [Double], into accumulators: Buffer,
                              flag: Int?, marker: Double) throws {
        let op = "accumulateSum"
        try requireFloat64(op)
        guard weights.count <= DeviceFlag.maximumWeights else {
            throw BackendError.invalidArgument("\(op): \(weights.count) weights, at most \(DeviceFlag.maximumWeights)")
        }
        if let flag, flag < 0 { throw BackendError.invalidArgument("\(op): flag index \(flag) < 0") }
        let xMemory = try checked(x, op, "x", count: count)
        let doubles = max(weights.count, flag.map { $0 + 2 } ?? 0)
        let accumulatorMemory = try checked(accumulators, op, "accumulators", count: 2 * doubles)
        let padded = weights + [Double](repeating: 0, count: DeviceFlag.maximumWeights - weights.count)
        try reductionLock.withLock {
            // count 0 still runs the combine: s = 0 over zero groups.
            let (partials, groups) = count == 0 ? (accumulatorMemory, 0)
                : try launchSumPartials(xMemory, count: count, mode: squares ? 1 : 0)
            try launchGroups(.accumulatePartials, groups: 1, [
                .buffer(partials), try .int(groups), .buffer(accumulatorMemory), try .int(weights.count),
            ] + padded.map { .double($0) } + [try .int(flag ?? -1, "flag"), .double(marker)])
        }
    }

    public func clipScale(_ x: Buffer, count: Int, squaredNorm accumulators: Buffer, index: Int, maxNorm: Double,
                          epsilon: Double) throws {
        let op = "clipScale"
        try requireFloat64(op)
        guard index >= 0 else { throw BackendError.invalidArgument("\(op): index \(index) < 0") }
        try launch(.clipScale, global: count, [
            .buffer(try checked(x, op, "x", count: count)), try .int(count),
            .buffer(try checked(accumulators, op, "accumulators", count: 2 * index + 2)), try .int(index, "index"),
            .double(maxNorm), .double(epsilon),
        ])
    }

    // MARK: Optimizer and masks

    public func adamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                          hyper: AdamWHyperparameters, skipWhen flag: DeviceFlag?) throws {
        let op = "adamwStep"
        guard hyper.step >= 1 else { throw BackendError.invalidArgument("\(op): step \(hyper.step) < 1 (it is 1-based)") }
        let paramMemory = try checked(param, op, "param", count: count)
        let maskMemory = try mask.map { try checked($0, op, "mask", count: count) }
        let flagMemory = try flag.map { try checked($0.buffer, op, "flag", count: 2 * $0.index + 2) }
        if let flag, flag.index < 0 { throw BackendError.invalidArgument("\(op): flag index \(flag.index) < 0") }
        let beta1 = Double(hyper.beta1), beta2 = Double(hyper.beta2), step = Double(hyper.step)
        let biasCorrection1 = 1 - pow(beta1, step), sqrtBiasCorrection2 = (1 - pow(beta2, step)).squareRoot()
        try launch(.adamwStep, global: count, [
            .buffer(paramMemory), .buffer(try checked(grad, op, "grad", count: count)),
            .buffer(try checked(m, op, "m", count: count)), .buffer(try checked(v, op, "v", count: count)),
            // Without a mask the kernel never reads this argument, but OpenCL 1.2 wants a valid buffer there.
            .buffer(maskMemory ?? paramMemory), .int32(maskMemory == nil ? 0 : 1),
            .buffer(flagMemory ?? paramMemory), try .int(flag?.index ?? -1, "flag"), try .int(count),
            .float(hyper.learningRate), .float(hyper.beta1), .float(hyper.beta2), .float(hyper.eps),
            .float(hyper.weightDecay), .float(Float(biasCorrection1)), .float(Float(sqrtBiasCorrection2)),
        ])
    }

    // MARK: Channel masks

    public func scaleColumns(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let op = "scaleColumns"
        let count = try size(rows, cols, op)
        try launch(.scaleColumns, columns: cols, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(mask, op, "mask", count: cols)),
            .buffer(try checked(out, op, "out", count: count)), try .int(rows), try .int(cols),
        ])
    }

    public func scaleRows(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let op = "scaleRows"
        let count = try size(rows, cols, op)
        try launch(.scaleRows, columns: cols, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(mask, op, "mask", count: rows)),
            .buffer(try checked(out, op, "out", count: count)), try .int(rows), try .int(cols),
        ])
    }

    public func segmentSum(_ src: Buffer, offsets: Buffer, members: Buffer, dst: Buffer, segments: Int) throws {
        let op = "segmentSum"
        try launch(.segmentSum, global: segments, [
            .buffer(try checked(src, op, "src", count: 0)), try .int(src.count, "src.count"),
            .buffer(try checked(offsets, op, "offsets", count: segments + 1)),
            .buffer(try checked(members, op, "members", count: 0)), try .int(members.count, "members.count"),
            .buffer(try checked(dst, op, "dst", count: segments)), try .int(segments),
        ])
    }

    public func addScaledSign(_ x: Buffer, alpha: Float, y: Buffer, count: Int) throws {
        let op = "addScaledSign"
        try launch(.addScaledSign, global: count, [
            .buffer(try checked(x, op, "x", count: count)), .float(alpha),
            .buffer(try checked(y, op, "y", count: count)), try .int(count),
        ])
    }

    public func maskGradientRows(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let op = "maskGradientRows"
        let count = try size(rows, cols, op)
        try launch(.maskGradientRows, global: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(dY, op, "dY", count: count)),
            try .int(rows), try .int(cols), .buffer(try checked(dMask, op, "dMask", count: rows)),
        ])
    }

    public func maskGradient(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let op = "maskGradient"
        let count = try size(rows, cols, op)
        let xMemory = try checked(x, op, "x", count: count), dYMemory = try checked(dY, op, "dY", count: count)
        let dMaskMemory = try checked(dMask, op, "dMask", count: cols)
        let tiles = columnTiles(rows)
        try withColumnPartials(floats: tiles * cols, rows: rows, cols: cols) { partials in
            try launch(.maskGradientPartials, columns: cols, rows: tiles, [
                .buffer(xMemory), .buffer(dYMemory), try .int(rows), try .int(cols), try .int(Self.columnTileRows),
                .buffer(partials),
            ])
            try combineColumnPartials(partials, first: 0, tiles: tiles, cols: cols, keep: nil, into: dMaskMemory)
        }
    }

    // MARK: Gather / scatter

    public func gather(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        let op = "gather"
        try launch(.gather, global: count, [
            .buffer(try checked(src, op, "src", count: 0)), try .int(src.count, "src.count"),
            .buffer(try checked(indices, op, "indices", count: count)),
            .buffer(try checked(dst, op, "dst", count: count)), try .int(count),
        ])
    }

    public func scatterAdd(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        let op = "scatterAdd"
        try launch(.scatterAdd, global: count, [
            .buffer(try checked(src, op, "src", count: count)),
            .buffer(try checked(indices, op, "indices", count: count)),
            .buffer(try checked(dst, op, "dst", count: 0)), try .int(dst.count, "dst.count"), try .int(count),
        ])
    }

    // MARK: Power iteration / randomized SVD steps

    public func gram(_ a: Buffer, rows: Int, cols: Int, out: Buffer) throws {
        _ = try size(rows, cols, "gram")
        _ = try checked(a, "gram", "a", count: rows * cols)
        _ = try checked(out, "gram", "out", count: cols * cols)
        // Aᵀ·A as one GEMM (op(A) = Aᵀ, B = A): Ssyrk would halve the flops but is one more CLBlast program to
        // compile, and it fills only one triangle.
        try gemm(GemmSpec(m: cols, n: cols, k: rows, transA: true), a: a, b: a, c: out)
    }

    public func matVec(_ a: Buffer, rows: Int, cols: Int, x: Buffer, y: Buffer, transposed: Bool) throws {
        let op = "matVec"
        let count = try size(rows, cols, op)
        try launch(transposed ? .matVecTransposed : .matVec, global: transposed ? cols : rows, [
            .buffer(try checked(a, op, "a", count: count)), try .int(rows), try .int(cols),
            .buffer(try checked(x, op, "x", count: transposed ? rows : cols)),
            .buffer(try checked(y, op, "y", count: transposed ? cols : rows)),
        ])
    }

    public func normalize(_ x: Buffer, count: Int) throws -> Double {
        let norm = try sumOfSquares(x, count: count).squareRoot()
        if norm > 0 { try scale(x, by: Float(1 / norm), count: count) }
        return norm
    }

    /// Jacobi sweeps at most: float32 Jacobi converges quadratically, 6 to 10 sweeps for n = 64 in practice;
    /// the kernel stops earlier once the off-diagonal mass is at roundoff.
    static let eigenSweeps = 30

    public func symmetricEigen(_ a: Buffer, n: Int, batch: Int, values: Buffer, vectors: Buffer) throws {
        let op = "symmetricEigen"
        let count = try size(n * n, batch, op)
        guard n <= 256 else { throw BackendError.invalidArgument("\(op): n = \(n) is above the kernel's 256") }
        // Exactly one work-group per matrix: dimension 0 is the group's work-items (the kernel's own local size,
        // which a device may cap below `localSize`), dimension 1 the matrix. The kernel cannot leave surplus groups
        // out by returning early: PoCL miscompiles barriers after a group-dependent return.
        guard let kernel = kernels[.symmetricEigen] else {
            throw BackendError.unsupported("symmetric_eigen is not available on \(device.name)")
        }
        let local = try launchLock.withLock { try localSize(.symmetricEigen, kernel) }
        try launch(.symmetricEigen, columns: local, rows: batch, [
            .buffer(try checked(a, op, "a", count: count)), try .int(n), try .int(Self.eigenSweeps),
            .buffer(try checked(values, op, "values", count: n * batch)),
            .buffer(try checked(vectors, op, "vectors", count: count)),
        ])
    }

    // MARK: Launching kernels

    enum KernelArgument: Equatable {
        case buffer(cl_mem)
        case int32(Int32)
        case long(Int64)
        case float(Float)
        case double(Double)

        /// A size or offset for an `int` kernel parameter; the kernels index with 32-bit sizes.
        static func int(_ value: Int, _ label: String = "size") throws -> KernelArgument {
            guard let narrow = Int32(exactly: value) else {
                throw BackendError.invalidArgument(
                    "\(label) = \(value) does not fit the OpenCL kernels' 32-bit indices")
            }
            return .int32(narrow)
        }

        /// Equal when the kernel would receive the same bytes (floats by bit pattern: −0 is not +0, NaN is NaN).
        static func == (left: KernelArgument, right: KernelArgument) -> Bool {
            switch (left, right) {
            case let (.buffer(a), .buffer(b)): return a == b
            case let (.int32(a), .int32(b)): return a == b
            case let (.long(a), .long(b)): return a == b
            case let (.float(a), .float(b)): return a.bitPattern == b.bitPattern
            case let (.double(a), .double(b)): return a.bitPattern == b.bitPattern
            default: return false
            }
        }
    }

    /// Enqueues `kernel` over `global` work-items (rounded up to the local size; the kernels check bounds).
    func launch(_ name: KernelName, global: Int, _ arguments: [KernelArgument]) throws {
        try launch(name, columns: global, rows: 1, arguments)
    }

    /// Enqueues `kernel` over a 2-D range: dimension 0 = `columns` (rounded up to the local size), dimension 1 =
    /// `rows`, with work-groups of (local size × 1).
    func launch(_ name: KernelName, columns: Int, rows: Int, _ arguments: [KernelArgument]) throws {
        guard let kernel = kernels[name] else {
            throw BackendError.unsupported("\(name.rawValue) is not available on \(device.name)")
        }
        guard columns > 0, rows > 0 else { return }
        _ = try KernelArgument.int(columns, "work size")
        _ = try KernelArgument.int(rows, "work size")
        try launchLock.withLock { try launchLocked(name, kernel, columns: columns, rows: rows, arguments) }
    }

    /// A row operation (LayerNorm, softmax, the losses): one work-item per row (`perItem`, on CPU devices) or one
    /// work-group per row (`perGroup`, the GPU shape). Both kernels take the same arguments; the work-groups are
    /// laid out along dimension 0, because some GPUs cap dimension 1 at 65,535 groups and attention's softmax has
    /// heads × images × tokens rows.
    private func launchRows(_ perItem: KernelName, _ perGroup: KernelName, rows: Int,
                            _ arguments: [KernelArgument]) throws {
        switch kernelShape {
        case .cpuDevice: try launch(perItem, global: rows, arguments)
        case .gpu: try launchGroups(perGroup, groups: rows, arguments)
        }
    }

    /// Row tiles of a two-stage column reduction over `rows` rows.
    private func columnTiles(_ rows: Int) -> Int {
        (rows + Self.columnTileRows - 1) / Self.columnTileRows
    }

    /// Runs both stages of a column reduction with the shared partials scratch (at least `floats` elements, grown
    /// as needed). Under `columnPartialsLock`, so that stage 1 of another thread's reduction cannot be enqueued
    /// between this one's stages (the queue is in order, so that is all it takes). Nothing to do for an empty shape.
    private func withColumnPartials(floats: Int, rows: Int, cols: Int, _ stages: (cl_mem) throws -> Void) throws {
        if rows == 0 || cols == 0 { return }
        try columnPartialsLock.withLock { try stages(try scratchBuffer(&columnPartials, floats: floats)) }
    }

    /// The memory of `scratch`, replaced by a new buffer first when it holds fewer than `floats` elements (the old
    /// one is freed once the kernels already enqueued on it are done). Called under the lock that guards `scratch`.
    func scratchBuffer(_ scratch: inout OpenCLBuffer?, floats: Int) throws -> cl_mem {
        if let existing = scratch, existing.count >= floats { return existing.memory }
        scratch = nil
        guard let created = try allocate(floats) as? OpenCLBuffer else {
            preconditionFailure("allocate returned a buffer of another backend")
        }
        scratch = created
        return created.memory
    }

    /// Stage 2 of a float column reduction: `out[c] += Σ_t partials[first + t·cols + c]`, skipping the columns
    /// whose `keep` is 0 when a keep mask is given.
    private func combineColumnPartials(_ partials: cl_mem, first: Int, tiles: Int, cols: Int, keep: cl_mem?,
                                       into out: cl_mem) throws {
        try launch(.columnPartialsCombine, global: cols, [
            // Without a keep mask the kernel never reads that argument, but OpenCL 1.2 wants a valid buffer there.
            .buffer(partials), try .int(first), try .int(tiles), try .int(cols), .buffer(keep ?? partials),
            .int32(keep == nil ? 0 : 1), .buffer(out),
        ])
    }

    /// Enqueues exactly `groups × rows` work-groups of `kernel` (dimension 0: `groups` groups of the kernel's local
    /// size; dimension 1: `rows`), for GPU-shaped kernels that give each row (or tile) a whole work-group and read
    /// `get_group_id`/`get_local_size` themselves.
    func launchGroups(_ name: KernelName, groups: Int, rows: Int = 1, _ arguments: [KernelArgument]) throws {
        guard let kernel = kernels[name] else {
            throw BackendError.unsupported("\(name.rawValue) is not available on \(device.name)")
        }
        guard groups > 0, rows > 0 else { return }
        try launchLock.withLock {
            let local = try localSize(name, kernel)
            _ = try KernelArgument.int(groups * local, "work size")
            _ = try KernelArgument.int(rows, "work size")
            try launchLocked(name, kernel, columns: groups * local, rows: rows, arguments)
        }
    }

    private func launchLocked(_ name: KernelName, _ kernel: cl_kernel, columns: Int, rows: Int,
                              _ arguments: [KernelArgument]) throws {
        let bound = boundArguments[name] ?? []
        for (index, argument) in arguments.enumerated() {
            if index < bound.count, bound[index] == argument { continue }
            kernelArgumentsSet += 1
            let status: cl_int
            switch argument {
            case var .buffer(memory):
                status = clSetKernelArg(kernel, cl_uint(index), MemoryLayout<cl_mem>.size, &memory)
            case var .int32(value):
                status = clSetKernelArg(kernel, cl_uint(index), 4, &value)
            case var .long(value):
                status = clSetKernelArg(kernel, cl_uint(index), 8, &value)
            case var .float(value):
                status = clSetKernelArg(kernel, cl_uint(index), 4, &value)
            case var .double(value):
                status = clSetKernelArg(kernel, cl_uint(index), 8, &value)
            }
            if status != CL_SUCCESS {
                // The kernel's arguments are now partly unknown: set them all at its next launch.
                Self.releaseBuffers(boundArguments.removeValue(forKey: name) ?? [])
                try checkCL(status, "clSetKernelArg(\(name.rawValue), \(index))")
            }
        }
        for case let .buffer(memory) in arguments { clRetainMemObject(memory) }
        Self.releaseBuffers(bound)
        boundArguments[name] = arguments
        let local = try localSize(name, kernel)
        var globalSize = [(columns + local - 1) / local * local, rows]
        var localSizeValue = [local, 1]
        try checkCL(clEnqueueNDRangeKernel(queue, kernel, rows == 1 ? 1 : 2, nil, &globalSize, &localSizeValue, 0,
                                           nil, nil), "clEnqueueNDRangeKernel")
    }

    /// The local size launches of `name` use (nil when the kernel is not built on this device).
    func launchLocalSize(_ name: KernelName) throws -> Int? {
        guard let kernel = kernels[name] else { return nil }
        return try launchLock.withLock { try localSize(name, kernel) }
    }

    /// `localSize`, or less where the device or the compiled kernel cannot take that many work-items.
    /// Called under `launchLock` (it caches into `localSizes`).
    private func localSize(_ name: KernelName, _ kernel: cl_kernel) throws -> Int {
        if let known = localSizes[name] { return known }
        var limit = 0
        try checkCL(clGetKernelWorkGroupInfo(kernel, shared.device, cl_kernel_work_group_info(CL_KERNEL_WORK_GROUP_SIZE),
                                             MemoryLayout<Int>.size, &limit, nil), "clGetKernelWorkGroupInfo")
        let size = max(1, min(Self.localSize, limit))
        localSizes[name] = size
        return size
    }

    // MARK: Checks

    /// The `cl_mem` of a buffer of this backend's context; a buffer of another backend is a programming error.
    func openCLBuffer(_ buffer: Buffer) throws -> cl_mem {
        guard let openCL = buffer as? OpenCLBuffer, openCL.context == shared.context else {
            preconditionFailure("\(name): a buffer of another backend was passed in")
        }
        return openCL.memory
    }

    func checked(_ buffer: Buffer, _ operation: String, _ label: String, offset: Int = 0,
                         count: Int) throws -> cl_mem {
        let memory = try openCLBuffer(buffer)
        guard offset >= 0, count >= 0 else {
            throw BackendError.invalidArgument("\(operation): negative offset \(offset) or count \(count) for \(label)")
        }
        guard offset + count <= buffer.count else {
            throw BackendError.invalidArgument(
                "\(operation): \(label) holds \(buffer.count) elements, needs \(offset + count)"
                    + (offset > 0 ? " (offset \(offset) + count \(count))" : ""))
        }
        return memory
    }

    func size(_ rows: Int, _ cols: Int, _ operation: String) throws -> Int {
        guard rows >= 0, cols >= 0 else {
            throw BackendError.invalidArgument("\(operation): negative shape [\(rows), \(cols)]")
        }
        let (count, overflow) = rows.multipliedReportingOverflow(by: cols)
        guard !overflow else { throw BackendError.invalidArgument("\(operation): shape [\(rows), \(cols)] overflows") }
        return count
    }

    private func requireFloat64(_ operation: String) throws {
        guard device.supportsFloat64 else {
            throw BackendError.unsupported(
                "\(operation) needs cl_khr_fp64 (float64 accumulation), which \(device.name) does not provide")
        }
    }
}
