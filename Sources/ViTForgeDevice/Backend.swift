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
///   value to the host (`sum`, `sumOfSquares`, `sumOfAbs`), `synchronize`, and
///   `StagingBuffer.waitForUpload` (`blockingCalls` counts all but the last). A training step needs none of them: uploads go through
///   `uploadAsync`, loss bookkeeping through `accumulateSum` (see `ViTForgeTrain`'s `LossAccumulators`).
/// - Output ranges never overlap input ranges unless an operation says so (`copy` within one buffer, the matrices
///   C of a strided batch, `scatterAdd`'s indices: all must be disjoint).
/// - Calls may come from several threads (Swift Testing runs cases in parallel); both backends serialise what must
///   be serialised (OpenCL's set-argument + enqueue, CLBlast 1.5.3's cache). Training drives one backend from one
///   thread.
public protocol Backend: TensorOps, LayerOps, TrainingOps, MaskOps, LinearAlgebraOps {}

/// A role of `Backend`: buffers and the queue (identity, allocation, transfers, staging, waiting for the device).
public protocol DeviceMemory: AnyObject {
    /// A short description for logs and reports: `cpu (OpenBLAS, 2 threads)`, `opencl:0.0 NVIDIA H100 …`.
    var name: String { get }
    var kind: BackendKind { get }

    /// A buffer of `count` 4-byte elements, owned by this backend. Contents are undefined until written.
    func allocate(_ count: Int) throws -> Buffer

    func upload(_ values: UnsafeBufferPointer<Float>, to buffer: Buffer, offset: Int) throws
    func upload(_ values: UnsafeBufferPointer<Int32>, to buffer: Buffer, offset: Int) throws
    func download(_ buffer: Buffer, offset: Int, into values: UnsafeMutableBufferPointer<Float>) throws
    /// `dst[dstOffset ..< dstOffset+count] = src[srcOffset ..< srcOffset+count]`.
    func copy(_ src: Buffer, srcOffset: Int, to dst: Buffer, dstOffset: Int, count: Int) throws

    /// `buffer[offset ..< offset+count] = value`.
    func fill(_ buffer: Buffer, value: Float, offset: Int, count: Int) throws

    /// Waits until every enqueued operation has finished (for timing; results are ordered without it).
    func synchronize() throws

    /// Host memory of `count` 4-byte elements owned by this backend (page-locked where the driver offers it), the
    /// source of `uploadAsync`. Ownership: the host writes it, then hands it to `uploadAsync`; from then until
    /// `waitForUpload()` returns, the device may be reading it and the host must not write it. A caller that fills
    /// the next batch while the device works on this one keeps two and alternates (double buffering).
    func makeStaging(_ count: Int) throws -> StagingBuffer

    /// Enqueues `buffer[offset ..< offset+count] = staging[0 ..< count]` and returns without waiting; operations
    /// enqueued later see the new contents (the queue is in order). See `makeStaging` for when `staging` may be
    /// written again.
    func uploadAsync(_ staging: StagingBuffer, count: Int, to buffer: Buffer, offset: Int) throws

    /// The blocking calls made on this backend so far (`download`, `sum`, `sumOfSquares`, `sumOfAbs`,
    /// `synchronize`): a debug counter for tests and benchmarks that check a path does not wait for the device.
    var blockingCalls: Int { get }
}

/// A role of `Backend`: matrix products, elementwise arithmetic, gather/scatter and the reductions, what any layer
/// is built from.
public protocol TensorOps: DeviceMemory {
    /// `C = alpha·op(A)·op(B) + beta·C` with `op(A)` m×k, `op(B)` k×n, `C` m×n (leading dimensions and element
    /// offsets in `spec`).
    func gemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws

    /// `spec.batch` independent products; matrix `i` starts at `offset + i·stride` in each buffer (attention:
    /// one product per image for one head).
    func gemmStridedBatched(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws

    /// `x[r, c] += bias[c]` for x [rows, cols].
    func addBias(_ x: Buffer, bias: Buffer, rows: Int, cols: Int) throws

    /// Bias gradient: `dBias[c] += Σ_r dOut[r, c]`.
    func addBiasBackward(dOut: Buffer, dBias: Buffer, rows: Int, cols: Int) throws

    /// Residual add: `out[i] = a[i] + b[i]` (`out` may alias `a` or `b`).
    func add(_ a: Buffer, _ b: Buffer, out: Buffer, count: Int) throws

    /// `y[i] += alpha·x[i]`: the residual's backward, and gradient accumulation.
    func axpy(alpha: Float, x: Buffer, y: Buffer, count: Int) throws

    /// `x[i] *= alpha`.
    func scale(_ x: Buffer, by alpha: Float, count: Int) throws

    /// `dst[i] = src[indices[i]]` for `i < count` (`indices`: Int32 element indices into `src`).
    func gather(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws

    /// The adjoint of `gather`: `dst[indices[i]] += src[i]`. Indices must be unique (no write conflicts).
    func scatterAdd(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws

    /// Merges the rows of x [rows, cols] into running per-column statistics kept in float64.
    /// `state` holds `ColumnStatistics.stateCount(cols)` elements: float64 mean[cols] then float64 M2[cols]
    /// (Chan et al.'s parallel update), and `countBefore` is how many rows were merged before this call.
    /// Start from a zero-filled state with `countBefore = 0`.
    func columnStatisticsAccumulate(x: Buffer, rows: Int, cols: Int, state: Buffer, countBefore: Int) throws

    /// `Σ x[i]`, accumulated in float64, returned to the host (waits for the device).
    func sum(_ x: Buffer, count: Int) throws -> Double

    /// `Σ x[i]²`, accumulated in float64 (gradient-norm clipping, normalisation).
    func sumOfSquares(_ x: Buffer, count: Int) throws -> Double

    /// `Σ |x[i]|`, accumulated in float64 (an ℓ1 penalty's value).
    func sumOfAbs(_ x: Buffer, count: Int) throws -> Double
}

/// A role of `Backend`: the fused layers of a ViT and its losses, forward and backward.
public protocol LayerOps: DeviceMemory {
    /// `out = (x − mean)·rstd·gamma + beta` per row of x [rows, cols]; saves `mean` and `rstd` [rows] for backward.
    func layerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer,
                          rows: Int, cols: Int, eps: Float) throws

    /// Accumulates `dX`, `dGamma`, `dBeta` from `dOut`, using the saved `mean`/`rstd`.
    func layerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, mean: Buffer, rstd: Buffer,
                           dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws

    /// `out[r, :] = softmax(scale · x[r, :])` (`out` may alias `x`).
    func softmaxForward(x: Buffer, out: Buffer, rows: Int, cols: Int, scale: Float) throws

    /// `dX[r, c] += scale · y[r, c] · (dOut[r, c] − Σ_j dOut[r, j]·y[r, j])` with `y` the forward output.
    func softmaxBackward(dOut: Buffer, out: Buffer, dX: Buffer, rows: Int, cols: Int, scale: Float) throws

    /// `out[r, c] = gelu(x[r, c] + bias[c])` with the exact (erf) GELU, as PyTorch's default `nn.GELU()`.
    func biasGeluForward(x: Buffer, bias: Buffer, out: Buffer, rows: Int, cols: Int) throws

    /// `dX[r, c] += gelu'(x[r, c] + bias[c]) · dOut[r, c]` (the bias gradient is `addBiasBackward` of that).
    func biasGeluBackward(dOut: Buffer, x: Buffer, bias: Buffer, dX: Buffer, rows: Int, cols: Int) throws

    /// Fused multi-head attention for `batch` images of `tokens` tokens. `qkv` [batch·tokens, layout.qkvFeatures]
    /// holds each token's q | k | v (as `QKVLayout` places every head's features); for every image, head h and
    /// query i, with `s_ij = scale·q_i·k_j` over the head's q/k width:
    /// `out[i, mergedColumn(h, d)] = Σ_j softmax_j(s_ij)·v_j[d]` (out [batch·tokens, layout.totalV], written) and
    /// `logSumExp[(h·batch + b)·tokens + i] = log Σ_j exp(s_ij)` (written), which is all the backward needs to
    /// recompute the probabilities: the [tokens × tokens] matrices are never stored. Heads may have different and
    /// unequal q/k and v widths (pruned models).
    func attentionForward(qkv: Buffer, layout: QKVLayout, batch: Int, tokens: Int, scale: Float, out: Buffer,
                          logSumExp: Buffer) throws

    /// The backward of `attentionForward`: accumulates into the q, k and v columns of `dQKV` [batch·tokens,
    /// qkvFeatures] from `dOut` [batch·tokens, totalV], given the forward's `qkv`, `out` and `logSumExp`.
    func attentionBackward(qkv: Buffer, out: Buffer, logSumExp: Buffer, dOut: Buffer, dQKV: Buffer,
                           layout: QKVLayout, batch: Int, tokens: Int, scale: Float) throws

    /// Cross-entropy with label smoothing ε: target `y = (1−ε)·onehot(label) + ε/classes`;
    /// `losses[r] = −Σ_c y_c·log softmax(logits[r])_c`, and `probs` = the softmax, for backward.
    /// `labels` holds `Int32` class indices.
    func crossEntropyForward(logits: Buffer, labels: Buffer, probs: Buffer, losses: Buffer,
                             rows: Int, classes: Int, smoothing: Float) throws

    /// `dLogits[r, c] += scale · (probs[r, c] − y[r, c])` (`scale` = dLoss/dlosses[r], e.g. 1/rows for the mean).
    func crossEntropyBackward(probs: Buffer, labels: Buffer, dLogits: Buffer,
                              rows: Int, classes: Int, smoothing: Float, scale: Float) throws

    /// Knowledge distillation at temperature T (Hinton et al. 2015): with `ps = softmax(student/T)` and
    /// `pt = softmax(teacher/T)`, `losses[r] = T²·KL(pt ‖ ps) = T²·Σ_c pt·(log pt − log ps)`.
    /// Saves both softmaxes for backward.
    func distillationForward(student: Buffer, teacher: Buffer, studentProbs: Buffer, teacherProbs: Buffer,
                             losses: Buffer, rows: Int, classes: Int, temperature: Float) throws

    /// `dStudent[r, c] += scale · T · (ps[r, c] − pt[r, c])` (the teacher gets no gradient).
    func distillationBackward(studentProbs: Buffer, teacherProbs: Buffer, dStudent: Buffer,
                              rows: Int, classes: Int, temperature: Float, scale: Float) throws
}

/// A role of `Backend`: the trainer's bookkeeping kept on the device (loss sums and the non-finite flag, clipping,
/// AdamW).
public protocol TrainingOps: DeviceMemory {
    /// A reduction kept on the device, so that a training step reads nothing back: with `s = Σ_{i<count} x[i]`
    /// (`Σ x[i]²` when `squares`) accumulated in float64, `accumulators[j] += weights[j]·s` for every
    /// `j < weights.count` (at most `DeviceFlag.maximumWeights`) whose weight is not 0. `accumulators` holds float64
    /// values (2 elements each), indexed in doubles. With `flag`, a non-finite `s` is recorded: unless
    /// `accumulators[flag]` already holds a smaller non-zero marker, `accumulators[flag] = marker` (> 0, e.g. the
    /// step number) and `accumulators[flag + 1] = s`; zero the flag to clear it. Enqueued like any operation.
    func accumulateSum(_ x: Buffer, count: Int, squares: Bool, weights: [Double], into accumulators: Buffer,
                       flag: Int?, marker: Double) throws

    /// Gradient clipping with the norm kept on the device: `x[i] *= c` for `c = maxNorm / (√accumulators[index] +
    /// epsilon)` when `c < 1` (x untouched otherwise, and when the norm is NaN), `accumulators` as in
    /// `accumulateSum` (its `squares` sums over every clipped tensor).
    func clipScale(_ x: Buffer, count: Int, squaredNorm accumulators: Buffer, index: Int, maxNorm: Double,
                   epsilon: Double) throws

    /// One AdamW step (decoupled weight decay, bias-corrected moments, as `torch.optim.AdamW`) on `count`
    /// elements. Where `mask` is given and `mask[i] == 0`, parameter and moments stay untouched (pruned weights).
    /// With `skipWhen`, the whole update (parameter and moments) is skipped while that flag is non-zero: the
    /// trainer's non-finite-loss flag, so that weights stay as they were before the first bad step until the host
    /// next reads the flag.
    func adamwStep(param: Buffer, grad: Buffer, m: Buffer, v: Buffer, mask: Buffer?, count: Int,
                   hyper: AdamWHyperparameters, skipWhen flag: DeviceFlag?) throws
}

/// A role of `Backend`: the pruning methods' channel masks (masked LayerNorm, scaling by a mask, mask gradients,
/// penalties).
public protocol MaskOps: DeviceMemory {
    /// LayerNorm over the kept channels only (`keep[c]` is 1 or 0, a residual-width mask): each row's mean and
    /// variance over its kept columns, removed columns written 0 — what the LayerNorm of the physically smaller
    /// model computes on the kept channels.
    func maskedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, keep: Buffer, out: Buffer, mean: Buffer,
                                rstd: Buffer, rows: Int, cols: Int, eps: Float) throws

    /// The backward of `maskedLayerNormForward`: accumulates into the kept columns of `dX`, `dGamma`, `dBeta`
    /// (removed columns' outputs are constant, so they receive nothing).
    func maskedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, keep: Buffer, mean: Buffer, rstd: Buffer,
                                 dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws

    /// `out[r, c] = x[r, c]·mask[c]` for x [rows, cols]: a channel mask in the forward (soft or 0/1). `out` may be
    /// `x` (in place).
    func scaleColumns(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws

    /// `out[r, c] = x[r, c]·mask[r]` for x [rows, cols]: a mask on a weight's output rows (`out` may be `x`).
    func scaleRows(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws

    /// The masked-gradient path: `dMask[c] += Σ_r x[r, c]·dY[r, c]` for x, dY [rows, cols], where x is the tensor
    /// before the mask and dY the gradient of the masked tensor: the gradient of each mask entry. Sums in float64
    /// on the CPU; on OpenCL two stages (partial sums over row tiles, then a combine per column).
    func maskGradient(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws

    /// The same for a mask on rows: `dMask[r] += Σ_c x[r, c]·dY[r, c]` (one dot product per row, float64 sums).
    func maskGradientRows(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws

    /// `dst[s] += Σ src[members[k]]` over `k ∈ offsets[s] ..< offsets[s + 1]` (Int32 `offsets` [segments + 1] and
    /// `members`): the adjoint of a gather with repeated indices, e.g. one mask value's gradient from its columns'.
    func segmentSum(_ src: Buffer, offsets: Buffer, members: Buffer, dst: Buffer, segments: Int) throws

    /// `y[i] += alpha·sign(x[i])` (sign(0) = 0): an ℓ1 penalty's subgradient.
    func addScaledSign(_ x: Buffer, alpha: Float, y: Buffer, count: Int) throws
}

/// A role of `Backend`: small dense linear algebra for the pruning methods.
public protocol LinearAlgebraOps: DeviceMemory {
    /// Gram matrix `out = Aᵀ·A` (cols × cols) of a [rows, cols].
    func gram(_ a: Buffer, rows: Int, cols: Int, out: Buffer) throws

    /// `y = A·x` (a [rows, cols], x [cols], y [rows]) or, transposed, `y = Aᵀ·x` (x [rows], y [cols]).
    func matVec(_ a: Buffer, rows: Int, cols: Int, x: Buffer, y: Buffer, transposed: Bool) throws

    /// Eigen-decomposition of `batch` symmetric n×n matrices `a` [batch, n, n] (overwritten): `values` [batch, n]
    /// ascending, `vectors` [batch, n, n] with row i the unit eigenvector of values[i] (LAPACK `ssyevd` per matrix
    /// on the CPU; on OpenCL a work-group per matrix runs parallel cyclic Jacobi, n ≤ 256). Vulcan's TNNR
    /// decomposes every attention head's d×d Gram matrix with one call per step.
    func symmetricEigen(_ a: Buffer, n: Int, batch: Int, values: Buffer, vectors: Buffer) throws
}

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
