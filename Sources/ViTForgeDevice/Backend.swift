/// The device layer's one interface: buffers owned by a backend, and the fixed list of operations the model, the
/// trainer and the pruning methods need. The model calls nothing else, so the same code runs on the CPU (OpenBLAS +
/// Swift loops) and on OpenCL (CLBlast + `Kernels/*.cl`).
///
/// `Backend` is the composition of small roles, so that code which needs only some of it says which:
/// `DeviceMemory` (buffers, transfers, the queue), `TensorOps` (products, elementwise, reductions), `LayerOps` (the
/// fused layers and losses), `TrainingOps` (the trainer's device-side bookkeeping), `MaskOps` (pruning masks) and
/// `LinearAlgebraOps`. Every op role refines `DeviceMemory`: an operation is no use without buffers.
///
/// Conventions, the same for every operation:
/// - Tensors are row-major float32; sizes and offsets are counted in elements, never bytes.
/// - Index and label buffers hold `Int32` (4 bytes, like `Float`), uploaded with `upload(_:[Int32]…)`.
/// - Forward operations *write* their outputs. Backward operations *accumulate* (`+=`) into every gradient they
///   produce, as in llm.c: the caller zeroes gradient buffers once per step, and a tensor used twice (the residual
///   stream) simply receives both contributions.
/// - Operations are enqueued in order; nothing waits for the device except `download`, the reductions that return a
///   value to the host (`sum`, `sumOfSquares`, `sumOfAbs`), `synchronize`, and `StagingBuffer.waitForUpload`
///   (`blockingCalls` counts all but the last). A training step needs none of them: uploads go through
///   `uploadAsync`, loss bookkeeping through `accumulateSum` (see `ViTForgeTrain`'s `LossAccumulators`).
/// - Output ranges never overlap input ranges unless an operation says so (`copy` within one buffer, the matrices
///   C of a strided batch, `scatterAdd`'s indices: all must be disjoint).
/// - Arguments are checked once, in front of every backend: each role's public operation (`addBias`) runs
///   `ArgumentCheck` on its sizes, offsets, buffer bounds and scalars, then the backend's `uncheckedAddBias`. A bad
///   argument throws `BackendError.invalidArgument("<operation>: <what is wrong>")`, the same line on every backend,
///   before anything is enqueued. A backend adds only its own limits (`unsupported`: no float64, 32-bit kernel
///   indices, the eigen kernel's n ≤ 256).
/// - The *values* in index and label buffers are device memory and are not checked by the operations (that would
///   cost a download per call): callers check them on the host where they are made (the trainer checks each batch's
///   labels when it builds the batch). An out-of-range label makes its row's loss NaN (`crossEntropyForward`) or its
///   row of the gradient NaN (`crossEntropyBackward`); an out-of-range index gathers NaN (`gather`, `segmentSum`)
///   or is skipped (`scatterAdd`). Never a read or write outside a buffer, on any backend.
/// - Non-finite values: an operation computes with NaN and ±Inf like IEEE float arithmetic and never throws for
///   them. The contract is "NaN plus the non-finite flag": a bad value travels into the loss as NaN, and
///   `accumulateSum` with a `flag` records the first step whose sum was not finite, which the trainer reads (and
///   AdamW's `skipWhen` tests on the device). Nothing reads values back to look for NaN inside a step.
/// - Calls may come from several threads (Swift Testing runs cases in parallel); both backends serialise what must
///   be serialised (OpenCL's set-argument + enqueue, CLBlast 1.5.3's cache). Training drives one backend from one
///   thread.
/// How to add an operation, and which declarations are stable API: `docs/adding-an-op.md`.
public protocol Backend: TensorOps, LayerOps, TrainingOps, MaskOps, LinearAlgebraOps {}

/// A float64 element of a buffer (`accumulateSum`'s `flag`) that operations can test on the device: non-zero = set.
public struct DeviceFlag {
    public let buffer: Buffer
    /// In float64 values (2 elements each).
    public let index: Int

    public init(buffer: Buffer, index: Int) {
        self.buffer = buffer
        self.index = index
    }

    /// The most weights one `accumulateSum` takes (the OpenCL kernel's arguments).
    public static let maximumWeights = 8
}

public enum BackendKind: String, Sendable {
    case cpu
    case openCL = "opencl"
}

/// A block of device memory owned by one backend; `count` elements of 4 bytes.
/// Backends subclass it; handing a buffer to another backend is a programming error and traps.
open class Buffer {
    public let count: Int
    public init(count: Int) { self.count = count }
}

/// Shape and layout of one (or a strided batch of) row-major GEMM `C = alpha·op(A)·op(B) + beta·C`.
public struct GemmSpec: Sendable, Equatable {
    public var transA: Bool
    public var transB: Bool
    public var m: Int
    public var n: Int
    public var k: Int
    public var alpha: Float
    public var beta: Float
    /// Leading dimensions (row strides) of A, B, C as stored (before the transpose is applied).
    public var lda: Int
    public var ldb: Int
    public var ldc: Int
    public var offsetA = 0
    public var offsetB = 0
    public var offsetC = 0
    /// Element distance between consecutive matrices of a strided batch, and how many there are.
    public var strideA = 0
    public var strideB = 0
    public var strideC = 0
    public var batch = 1

    /// A dense product with the natural leading dimensions: A is stored m×k (k×m when `transA`), B k×n (n×k when
    /// `transB`), C m×n.
    public init(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                alpha: Float = 1, beta: Float = 0) {
        self.transA = transA
        self.transB = transB
        self.m = m
        self.n = n
        self.k = k
        self.alpha = alpha
        self.beta = beta
        // BLAS requires leading dimensions ≥ 1 even for empty matrices.
        self.lda = max(transA ? m : k, 1)
        self.ldb = max(transB ? k : n, 1)
        self.ldc = max(n, 1)
    }

    /// Elements of A, B and C that matrix `batch − 1` reaches; used to check buffer bounds.
    public var extentA: Int { offsetA + (batch - 1) * strideA + (transA ? (k - 1) * lda + m : (m - 1) * lda + k) }
    public var extentB: Int { offsetB + (batch - 1) * strideB + (transB ? (n - 1) * ldb + k : (k - 1) * ldb + n) }
    public var extentC: Int { offsetC + (batch - 1) * strideC + (m - 1) * ldc + n }
    /// Floating-point operations of the whole (batched) product: 2·m·n·k per matrix.
    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(batch) }
}

public struct AdamWHyperparameters: Sendable, Equatable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    /// Decoupled weight decay for this tensor; 0 for biases, norms and position/class tokens.
    public var weightDecay: Float
    /// 1-based step number, for the bias corrections `1 − βᵗ`.
    public var step: Int

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0, step: Int) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        self.step = step
    }
}

public enum ColumnStatistics {
    /// Elements (4 bytes each) of a statistics state for `cols` columns: float64 mean and M2 per column.
    public static func stateCount(_ cols: Int) -> Int { 4 * cols }
}

extension TrainingOps {
    /// AdamW without a skip flag.
    public func adamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                          hyper: AdamWHyperparameters) throws {
        try adamwStep(param: param, grad: grad, m: m, v: v, mask: mask, count: count, hyper: hyper, skipWhen: nil)
    }
}

extension DeviceMemory {
    /// Allocates a buffer holding `values`.
    public func makeBuffer(_ values: [Float]) throws -> Buffer {
        let buffer = try allocate(values.count)
        try values.withUnsafeBufferPointer { try upload($0, to: buffer, offset: 0) }
        return buffer
    }

    /// Allocates a buffer holding the indices or labels `values`.
    public func makeBuffer(_ values: [Int32]) throws -> Buffer {
        let buffer = try allocate(values.count)
        try values.withUnsafeBufferPointer { try upload($0, to: buffer, offset: 0) }
        return buffer
    }

    /// A zero-filled buffer.
    public func zeros(_ count: Int) throws -> Buffer {
        let buffer = try allocate(count)
        try fill(buffer, value: 0, offset: 0, count: count)
        return buffer
    }

    /// The first `count` elements of a buffer (all of it by default), copied to the host.
    public func read(_ buffer: Buffer, count: Int? = nil) throws -> [Float] {
        let n = count ?? buffer.count
        var values = [Float](repeating: 0, count: n)
        try values.withUnsafeMutableBufferPointer { try download(buffer, offset: 0, into: $0) }
        return values
    }

    public func write(_ values: [Float], to buffer: Buffer, offset: Int = 0) throws {
        try values.withUnsafeBufferPointer { try upload($0, to: buffer, offset: offset) }
    }
}
