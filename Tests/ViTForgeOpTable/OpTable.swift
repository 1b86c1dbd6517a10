import ViTForgeDevice
import ViTForgeTestBasics

// The rows of `BackendOpTests`: every operation of `Backend`, at odd sizes, with fresh random inputs.
// Backward rows pre-fill their gradient buffers with random values and expect prefill + contribution, which
// checks that they accumulate instead of overwriting.

extension OpCase {
    public static let table: [OpCase] = buffers + matrixProducts + elementwise + normalization + losses
        + statistics + optimizer + gatherScatter + masks + eigen + attention + rowShapes + bookkeeping

    // MARK: Buffers

    static let buffers: [OpCase] = [
        OpCase("buffer upload, download, copy and fill at offsets") { rng in
            let count = 197
            let initialA = rng.values(count)
            let initialB = rng.values(count)
            let patch = rng.values(37)
            let fillValue = -2.5
            let labels = [3, 0, 196, 42, 7, 13, 101]
            var expectedA = initialA
            expectedA.replaceSubrange(13 ..< 50, with: patch)                          // upload at offset 13
            for i in 101 ..< 108 { expectedA[i] = fillValue }                          // fill at offset 101
            for i in 0 ..< 7 { expectedA[180 + i] = expectedA[i] }                     // copy within a buffer
            var expectedB = initialB
            expectedB.replaceSubrange(5 ..< 42, with: expectedA[13 ..< 50])            // copy between buffers
            return PreparedOp(
                expected: [
                    ExpectedOutput("A", expectedA, Tolerance.exact),
                    ExpectedOutput("B", expectedB, Tolerance.exact),
                    ExpectedOutput("A[29 ..< 70] downloaded at an offset", Array(expectedA[29 ..< 70]), Tolerance.exact),
                    ExpectedOutput("Int32 uploaded at offset 3", labels.map(Double.init), Tolerance.exact),
                ],
                run: { backend in
                    let a = try backend.buffer(initialA)
                    let b = try backend.buffer(initialB)
                    try backend.write(patch.map { Float($0) }, to: a, offset: 13)
                    try backend.fill(a, value: Float(fillValue), offset: 101, count: 7)
                    try backend.copy(a, srcOffset: 0, to: a, dstOffset: 180, count: 7)
                    try backend.copy(a, srcOffset: 13, to: b, dstOffset: 5, count: 37)
                    var window = [Float](repeating: 0, count: 41)
                    try window.withUnsafeMutableBufferPointer { try backend.download(a, offset: 29, into: $0) }
                    let integers = try backend.allocate(13)
                    try labels.map { Int32($0) }.withUnsafeBufferPointer {
                        try backend.upload($0, to: integers, offset: 3)
                    }
                    let integerBits = try backend.read(integers).map { Int32(bitPattern: $0.bitPattern) }
                    return [try backend.values(a), try backend.values(b), window.map(Double.init),
                            integerBits[3 ..< 3 + labels.count].map(Double.init)]
                })
        },
    ]

    // MARK: Matrix products

    static let matrixProducts: [OpCase] = [
        // All four transpose combinations, with alpha/beta, padded leading dimensions and offsets.
        gemmRow(transA: false, transB: false, m: 37, n: 13, k: 7, alpha: 0.7, beta: 0.4, padding: 3, offsets: (5, 2, 9)),
        gemmRow(transA: false, transB: true, m: 13, n: 37, k: 19, alpha: -1.3, beta: 1, padding: 1, offsets: (0, 7, 3)),
        gemmRow(transA: true, transB: false, m: 7, n: 29, k: 37, alpha: 0.5, beta: -0.25, padding: 5, offsets: (11, 0, 1)),
        gemmRow(transA: true, transB: true, m: 23, n: 11, k: 13, alpha: 1.1, beta: 0.3, padding: 2, offsets: (3, 5, 0)),
        // A ViT-like dense shape (tokens × width → width), natural layout, beta 0.
        gemmRow(transA: false, transB: false, m: 197, n: 37, k: 197, alpha: 1, beta: 0, padding: 0, offsets: (0, 0, 0)),
        // k = 0: an empty product, C = beta·C.
        gemmRow(transA: false, transB: false, m: 13, n: 7, k: 0, alpha: 1, beta: 0.5, padding: 1, offsets: (0, 0, 2)),

        // Attention, one head of 3 in a [images, tokens, heads·headDim] activation: S = Q·Kᵀ/√d per image.
        OpCase("gemmStridedBatched Q·Kᵀ 5×(37×13·13×37), head 1 of 3 interleaved") { rng in
            let (images, tokens, heads, headDim, head) = (5, 37, 3, 13, 1)
            var spec = GemmSpec(m: tokens, n: tokens, k: headDim, transB: true,
                                alpha: 1 / Float(headDim).squareRoot(), beta: 0)
            spec.lda = heads * headDim
            spec.ldb = heads * headDim
            spec.offsetA = head * headDim
            spec.offsetB = head * headDim
            spec.strideA = tokens * heads * headDim
            spec.strideB = tokens * heads * headDim
            spec.offsetC = 3
            spec.strideC = tokens * tokens + 2 // padding between the score matrices must stay untouched
            spec.batch = images
            return gemmOp(spec, batched: true, rng: &rng)
        },
        // O = P·V written into the head's columns of [images, tokens, heads·headDim], accumulating (beta 0.5).
        OpCase("gemmStridedBatched P·V 5×(37×37·37×13) into head 2 of 3, beta 0.5") { rng in
            let (images, tokens, heads, headDim, head) = (5, 37, 3, 13, 2)
            var spec = GemmSpec(m: tokens, n: headDim, k: tokens, beta: 0.5)
            spec.ldb = heads * headDim
            spec.ldc = heads * headDim
            spec.offsetB = head * headDim
            spec.offsetC = head * headDim
            spec.strideA = tokens * tokens
            spec.strideB = tokens * heads * headDim
            spec.strideC = tokens * heads * headDim
            spec.batch = images
            return gemmOp(spec, batched: true, rng: &rng)
        },
        // dQ-like Aᵀ·Bᵀ over an odd batch (uneven split between workers), and a batch of one.
        OpCase("gemmStridedBatched TT 7×(19×11·11×13), alpha 0.9 beta 0.2") { rng in
            var spec = GemmSpec(m: 19, n: 13, k: 11, transA: true, transB: true, alpha: 0.9, beta: 0.2)
            spec.offsetA = 1
            spec.strideA = 11 * 19 + 3
            spec.strideB = 13 * 11
            spec.strideC = 19 * 13 + 1
            spec.batch = 7
            return gemmOp(spec, batched: true, rng: &rng)
        },
        OpCase("gemmStridedBatched batch 1, 13×7·7×37") { rng in
            gemmOp(GemmSpec(m: 13, n: 37, k: 7, alpha: 1.5, beta: 0), batched: true, rng: &rng)
        },

        OpCase("gram Aᵀ·A of 37×13") { rng in
            let (rows, cols) = (37, 13)
            let a = rng.values(rows * cols)
            return PreparedOp(
                expected: [ExpectedOutput("out", Reference.gram(a, rows: rows, cols: cols), Tolerance.reduction)],
                run: { backend in
                    let out = try backend.allocate(cols * cols)
                    try backend.gram(backend.buffer(a), rows: rows, cols: cols, out: out)
                    return [try backend.values(out)]
                })
        },
        OpCase("matVec A·x of 37×13") { rng in
            let (rows, cols) = (37, 13)
            let a = rng.values(rows * cols)
            let x = rng.values(cols)
            return PreparedOp(
                expected: [ExpectedOutput("y", Reference.matVec(a, rows: rows, cols: cols, x: x, transposed: false),
                                          Tolerance.reduction)],
                run: { backend in
                    let y = try backend.allocate(rows)
                    try backend.matVec(backend.buffer(a), rows: rows, cols: cols, x: backend.buffer(x), y: y,
                                       transposed: false)
                    return [try backend.values(y)]
                })
        },
        // Aᵀ·x is the adjoint of A·x: its finite-difference check is the gradient of Σ dOut·(A·x).
        OpCase("matVec Aᵀ·x of 197×13") { rng in
            let (rows, cols) = (197, 13)
            let a = rng.values(rows * cols)
            let x = rng.values(rows)
            let y = Reference.matVec(a, rows: rows, cols: cols, x: x, transposed: true)
            let input = rng.values(cols)
            return PreparedOp(
                expected: [ExpectedOutput("y", y, Tolerance.reduction)],
                run: { backend in
                    let y = try backend.allocate(cols)
                    try backend.matVec(backend.buffer(a), rows: rows, cols: cols, x: backend.buffer(x), y: y,
                                       transposed: true)
                    return [try backend.values(y)]
                },
                gradientChecks: [
                    GradientCheck(name: "Aᵀ·dOut as the gradient of Σ dOut·(A·x)", input: input, analytic: y) {
                        dot(x, Reference.matVec(a, rows: rows, cols: cols, x: $0, transposed: false))
                    },
                ])
        },
    ]

    static func gemmRow(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float,
                        padding: Int, offsets: (a: Int, b: Int, c: Int)) -> OpCase
    {
        let name = "gemm \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(k)·\(k)×\(n), alpha \(alpha) beta \(beta), "
            + "ld +\(padding), offsets \(offsets.a)/\(offsets.b)/\(offsets.c)"
        return OpCase(name) { rng in
            var spec = GemmSpec(m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, beta: beta)
            spec.lda = max(1, spec.lda) + padding
            spec.ldb += padding
            spec.ldc += padding
            spec.offsetA = offsets.a
            spec.offsetB = offsets.b
            spec.offsetC = offsets.c
            return gemmOp(spec, batched: false, rng: &rng)
        }
    }

    /// Random A, B and C a little larger than the spec reaches; the whole C buffer is compared, so elements the
    /// product must not touch (padding, the slack after it) are checked to be left alone.
    static func gemmOp(_ spec: GemmSpec, batched: Bool, rng: inout SeededGenerator) -> PreparedOp {
        let a = rng.values(max(spec.extentA, 0) + 3)
        let b = rng.values(max(spec.extentB, 0) + 2)
        let c = rng.values(spec.extentC + 5)
        return PreparedOp(
            expected: [ExpectedOutput("C", Reference.gemm(spec, a: a, b: b, c: c), Tolerance.reduction)],
            run: { backend in
                let cBuffer = try backend.buffer(c)
                if batched {
                    try backend.gemmStridedBatched(spec, a: backend.buffer(a), b: backend.buffer(b), c: cBuffer)
                } else {
                    try backend.gemm(spec, a: backend.buffer(a), b: backend.buffer(b), c: cBuffer)
                }
                return [try backend.values(cBuffer)]
            })
    }

    // MARK: Elementwise

    static let elementwise: [OpCase] = [
        OpCase("addBias 37×13") { rng in
            let (rows, cols) = (37, 13)
            let x = rng.values(rows * cols)
            let bias = rng.values(cols)
            return PreparedOp(
                expected: [ExpectedOutput("x", Reference.addBias(x, bias: bias, rows: rows, cols: cols),
                                          Tolerance.elementwise)],
                run: { backend in
                    let xBuffer = try backend.buffer(x)
                    try backend.addBias(xBuffer, bias: backend.buffer(bias), rows: rows, cols: cols)
                    return [try backend.values(xBuffer)]
                })
        },
        addBiasBackwardRow(rows: 197, cols: 13),
        OpCase("add 593 elements, out aliasing a") { rng in
            let count = 593
            let a = rng.values(count)
            let b = rng.values(count)
            return PreparedOp(
                expected: [ExpectedOutput("out", Reference.add(a, b), Tolerance.elementwise)],
                run: { backend in
                    let aBuffer = try backend.buffer(a)
                    try backend.add(aBuffer, backend.buffer(b), out: aBuffer, count: count)
                    return [try backend.values(aBuffer)]
                })
        },
        OpCase("add 197 elements into a third buffer") { rng in
            let count = 197
            let a = rng.values(count)
            let b = rng.values(count)
            return PreparedOp(
                expected: [ExpectedOutput("out", Reference.add(a, b), Tolerance.elementwise)],
                run: { backend in
                    let out = try backend.allocate(count)
                    try backend.add(backend.buffer(a), backend.buffer(b), out: out, count: count)
                    return [try backend.values(out)]
                })
        },
        OpCase("axpy alpha -0.37 on 593 of 601 elements") { rng in
            let (count, total) = (593, 601)
            let x = rng.values(total)
            let y = rng.values(total)
            // Elements past `count` must stay as they were.
            let expected = Reference.axpy(alpha: Double(Float(-0.37)), x: Array(x[..<count]), y: Array(y[..<count]))
                + y[count...]
            return PreparedOp(
                expected: [ExpectedOutput("y", expected, Tolerance.elementwise)],
                run: { backend in
                    let yBuffer = try backend.buffer(y)
                    try backend.axpy(alpha: -0.37, x: backend.buffer(x), y: yBuffer, count: count)
                    return [try backend.values(yBuffer)]
                })
        },
        OpCase("scale by 1.7 on 593 elements") { rng in
            let count = 593
            let x = rng.values(count)
            return PreparedOp(
                expected: [ExpectedOutput("x", Reference.scale(x, by: Double(Float(1.7))), Tolerance.elementwise)],
                run: { backend in
                    let xBuffer = try backend.buffer(x)
                    try backend.scale(xBuffer, by: 1.7, count: count)
                    return [try backend.values(xBuffer)]
                })
        },
        OpCase("biasGeluForward 37×197") { rng in
            let (rows, cols) = (37, 197)
            let x = rng.values(rows * cols, in: -5 ... 5)
            let bias = rng.values(cols)
            return PreparedOp(
                expected: [ExpectedOutput("out", Reference.biasGeluForward(x: x, bias: bias, rows: rows, cols: cols),
                                          Tolerance.elementwise)],
                run: { backend in
                    let out = try backend.allocate(rows * cols)
                    try backend.biasGeluForward(x: backend.buffer(x), bias: backend.buffer(bias), out: out,
                                                rows: rows, cols: cols)
                    return [try backend.values(out)]
                })
        },
        OpCase("biasGeluBackward 13×37") { rng in
            let (rows, cols) = (13, 37)
            let x = rng.values(rows * cols, in: -5 ... 5)
            let bias = rng.values(cols)
            let dOut = rng.values(rows * cols)
            let dX = Reference.biasGeluBackward(dOut: dOut, x: x, bias: bias, rows: rows, cols: cols)
            let prefill = prefill(like: dX, &rng)
            return PreparedOp(
                expected: [ExpectedOutput("dX", elementwiseSum(prefill, dX), Tolerance.elementwise)],
                run: { backend in
                    let dXBuffer = try backend.buffer(prefill)
                    try backend.biasGeluBackward(dOut: backend.buffer(dOut), x: backend.buffer(x),
                                                 bias: backend.buffer(bias), dX: dXBuffer, rows: rows, cols: cols)
                    return [try backend.values(dXBuffer)]
                },
                gradientChecks: [
                    GradientCheck(name: "dX", input: x, analytic: dX) {
                        dot(dOut, Reference.biasGeluForward(x: $0, bias: bias, rows: rows, cols: cols))
                    },
                    // The protocol's promise that the bias gradient is addBiasBackward of dX.
                    GradientCheck(name: "dBias = addBiasBackward(dX)", input: bias,
                                  analytic: Reference.addBiasBackward(dOut: dX, rows: rows, cols: cols)) {
                        dot(dOut, Reference.biasGeluForward(x: x, bias: $0, rows: rows, cols: cols))
                    },
                ])
        },
    ]

    // MARK: LayerNorm and softmax

    static let normalization: [OpCase] = [
        // eps 1e-6 with a row variance of ~3e-5, so that a wrong or missing eps shows (a 3 % change of rstd),
        // around a mean of 0.5 that a one-pass variance would cancel badly.
        layerNormForwardRow(rows: 37, cols: 197, eps: 1e-6, inputs: 0.49 ... 0.51),
        layerNormForwardRow(rows: 13, cols: 37, eps: 1e-5, inputs: -3 ... 5),
        residualLayerNormForwardRow(rows: 37, cols: 197, eps: 1e-6, residuals: 0.49 ... 0.51, sumInto: .separate),
        residualLayerNormForwardRow(rows: 13, cols: 37, eps: 1e-5, residuals: -3 ... 5, sumInto: .residual),
        residualLayerNormForwardRow(rows: 7, cols: 97, eps: 1e-5, residuals: -3 ... 5, sumInto: .branch),
        layerNormBackwardRow(rows: 13, cols: 37, eps: 1e-6, inputs: 0.49 ... 0.51),
        layerNormBackwardRow(rows: 7, cols: 197, eps: 1e-5, inputs: -3 ... 5),
        softmaxForwardRow(rows: 37, cols: 197, scale: 0.125, inputs: -20 ... 20),
        OpCase("softmaxForward in place (out aliasing x) 13×37, scale 1.7") { rng in
            let (rows, cols, scale) = (13, 37, Float(1.7))
            let x = rng.values(rows * cols, in: -4 ... 4)
            return PreparedOp(
                expected: [ExpectedOutput("out", Reference.softmaxForward(x: x, rows: rows, cols: cols,
                                                                          scale: Double(scale)), Tolerance.reduction)],
                run: { backend in
                    let xBuffer = try backend.buffer(x)
                    try backend.softmaxForward(x: xBuffer, out: xBuffer, rows: rows, cols: cols, scale: scale)
                    return [try backend.values(xBuffer)]
                })
        },
        softmaxBackwardRow(rows: 13, cols: 37, scale: 0.3),
    ]

    static func layerNormForwardRow(rows: Int, cols: Int, eps: Float, inputs: ClosedRange<Float>) -> OpCase {
        OpCase("layerNormForward \(rows)×\(cols), eps \(eps), x in \(inputs)") { rng in
            let x = rng.values(rows * cols, in: inputs)
            let gamma = rng.values(cols, in: 0.5 ... 1.5)
            let beta = rng.values(cols)
            let reference = Reference.layerNormForward(x: x, gamma: gamma, beta: beta, rows: rows, cols: cols,
                                                       eps: Double(eps))
            return PreparedOp(
                expected: [
                    ExpectedOutput("out", reference.out, Tolerance.reduction),
                    ExpectedOutput("mean", reference.mean, Tolerance.reduction),
                    ExpectedOutput("rstd", reference.rstd, Tolerance.reduction),
                ],
                run: { backend in
                    let out = try backend.allocate(rows * cols)
                    let mean = try backend.allocate(rows)
                    let rstd = try backend.allocate(rows)
                    try backend.layerNormForward(x: backend.buffer(x), gamma: backend.buffer(gamma),
                                                 beta: backend.buffer(beta), out: out, mean: mean, rstd: rstd,
                                                 rows: rows, cols: cols, eps: eps)
                    return [try backend.values(out), try backend.values(mean), try backend.values(rstd)]
                })
        }
    }

    /// Where `residualLayerNormForward` writes its sum: a buffer of its own, or over one of its inputs.
    enum SumBuffer: String { case separate, residual, branch }

    static func residualLayerNormForwardRow(rows: Int, cols: Int, eps: Float, residuals: ClosedRange<Float>,
                                            sumInto: SumBuffer) -> OpCase {
        OpCase("residualLayerNormForward \(rows)×\(cols), eps \(eps), residual in \(residuals), sum into "
               + sumInto.rawValue) { rng in
            let residual = rng.values(rows * cols, in: residuals)
            let branch = rng.values(rows * cols, in: -0.01 ... 0.01)
            let bias = rng.values(cols, in: -0.01 ... 0.01)
            let gamma = rng.values(cols, in: 0.5 ... 1.5)
            let beta = rng.values(cols)
            let sum = (0 ..< rows * cols).map { residual[$0] + branch[$0] + bias[$0 % cols] }
            // The LayerNorm is of the sum the operation writes: float32.
            let reference = Reference.layerNormForward(x: roundedToFloat(sum), gamma: gamma, beta: beta, rows: rows,
                                                       cols: cols, eps: Double(eps))
            return PreparedOp(
                expected: [
                    ExpectedOutput("sum", sum, Tolerance.elementwise),
                    ExpectedOutput("out", reference.out, Tolerance.reduction),
                    ExpectedOutput("mean", reference.mean, Tolerance.reduction),
                    ExpectedOutput("rstd", reference.rstd, Tolerance.reduction),
                ],
                run: { backend in
                    let (residualBuffer, branchBuffer) = (try backend.buffer(residual), try backend.buffer(branch))
                    let sumBuffer: Buffer
                    switch sumInto {
                    case .separate: sumBuffer = try backend.allocate(rows * cols)
                    case .residual: sumBuffer = residualBuffer
                    case .branch: sumBuffer = branchBuffer
                    }
                    let out = try backend.allocate(rows * cols)
                    let mean = try backend.allocate(rows)
                    let rstd = try backend.allocate(rows)
                    try backend.residualLayerNormForward(residual: residualBuffer, branch: branchBuffer,
                                                         bias: backend.buffer(bias), sum: sumBuffer,
                                                         gamma: backend.buffer(gamma), beta: backend.buffer(beta),
                                                         out: out, mean: mean, rstd: rstd, rows: rows, cols: cols,
                                                         eps: eps)
                    return [try backend.values(sumBuffer), try backend.values(out), try backend.values(mean),
                            try backend.values(rstd)]
                })
        }
    }

    static func layerNormBackwardRow(rows: Int, cols: Int, eps: Float, inputs: ClosedRange<Float>) -> OpCase {
        OpCase("layerNormBackward \(rows)×\(cols), eps \(eps), x in \(inputs)") { rng in
            let x = rng.values(rows * cols, in: inputs)
            let gamma = rng.values(cols, in: 0.5 ... 1.5)
            let beta = rng.values(cols)
            let dOut = rng.values(rows * cols)
            let forward = Reference.layerNormForward(x: x, gamma: gamma, beta: beta, rows: rows, cols: cols,
                                                     eps: Double(eps))
            func forwardOut(x: [Double], gamma: [Double], beta: [Double]) -> [Double] {
                Reference.layerNormForward(x: x, gamma: gamma, beta: beta, rows: rows, cols: cols, eps: Double(eps)).out
            }
            // The backend gets mean and rstd as its forward pass would have saved them: rounded to float.
            let savedMean = roundedToFloat(forward.mean)
            let savedRstd = roundedToFloat(forward.rstd)
            let exact = Reference.layerNormBackward(dOut: dOut, x: x, gamma: gamma, mean: forward.mean,
                                                    rstd: forward.rstd, rows: rows, cols: cols)
            let fromSaved = Reference.layerNormBackward(dOut: dOut, x: x, gamma: gamma, mean: savedMean,
                                                        rstd: savedRstd, rows: rows, cols: cols)
            let prefillX = prefill(like: fromSaved.dX, &rng)
            let prefillGamma = prefill(like: fromSaved.dGamma, &rng)
            let prefillBeta = prefill(like: fromSaved.dBeta, &rng)
            return PreparedOp(
                expected: [
                    ExpectedOutput("dX", elementwiseSum(prefillX, fromSaved.dX), Tolerance.reduction),
                    ExpectedOutput("dGamma", elementwiseSum(prefillGamma, fromSaved.dGamma), Tolerance.reduction),
                    ExpectedOutput("dBeta", elementwiseSum(prefillBeta, fromSaved.dBeta), Tolerance.reduction),
                ],
                run: { backend in
                    let dX = try backend.buffer(prefillX)
                    let dGamma = try backend.buffer(prefillGamma)
                    let dBeta = try backend.buffer(prefillBeta)
                    try backend.layerNormBackward(dOut: backend.buffer(dOut), x: backend.buffer(x),
                                                  gamma: backend.buffer(gamma), mean: backend.buffer(savedMean),
                                                  rstd: backend.buffer(savedRstd), dX: dX, dGamma: dGamma,
                                                  dBeta: dBeta, rows: rows, cols: cols)
                    return [try backend.values(dX), try backend.values(dGamma), try backend.values(dBeta)]
                },
                gradientChecks: [
                    GradientCheck(name: "dX", input: x, analytic: exact.dX) {
                        dot(dOut, forwardOut(x: $0, gamma: gamma, beta: beta))
                    },
                    GradientCheck(name: "dGamma", input: gamma, analytic: exact.dGamma) {
                        dot(dOut, forwardOut(x: x, gamma: $0, beta: beta))
                    },
                    GradientCheck(name: "dBeta", input: beta, analytic: exact.dBeta) {
                        dot(dOut, forwardOut(x: x, gamma: gamma, beta: $0))
                    },
                ])
        }
    }

    /// Random values of the same magnitude as `contribution`, so that an overwrite instead of `+=` (or a
    /// contribution lost under a much larger prefill) shows as an error of order 1.
    static func prefill(like contribution: [Double], _ rng: inout SeededGenerator) -> [Double] {
        var largest = 0.0
        for value in contribution { largest = max(largest, abs(value)) }
        return rng.values(contribution.count).map { Double(Float($0 * largest)) }
    }

    // MARK: Losses

    static let losses: [OpCase] = [
        crossEntropyForwardRow(smoothing: 0),
        crossEntropyForwardRow(smoothing: 0.1),
        crossEntropyBackwardRow(smoothing: 0),
        crossEntropyBackwardRow(smoothing: 0.1),
        distillationForwardRow(temperature: 1),
        distillationForwardRow(temperature: 4),
        distillationBackwardRow(temperature: 1),
        distillationBackwardRow(temperature: 4),
    ]

    /// With `negativeInfinities`, row 0 gets a −Inf logit on a class other than its label and row 1 on its label
    /// (rows ≥ 2, classes ≥ 2): probabilities 0 there and an infinite loss, on every backend and kernel shape.
    static func crossEntropyForwardRow(rows: Int = 13, classes: Int = 37, smoothing: Float,
                                       logits range: ClosedRange<Float> = -6 ... 6,
                                       negativeInfinities: Bool = false) -> OpCase {
        let extremes = (range == -6 ... 6 ? "" : ", logits in \(range)") + (negativeInfinities ? ", −Inf logits" : "")
        return OpCase("crossEntropyForward \(rows)×\(classes), smoothing \(smoothing)\(extremes)") { rng in
            var logits = rng.values(rows * classes, in: range)
            let labels = (0 ..< rows).map { _ in Int.random(in: 0 ..< classes, using: &rng) }
            if negativeInfinities {
                logits[(labels[0] + 1) % classes] = -.infinity
                logits[classes + labels[1]] = -.infinity
            }
            let reference = Reference.crossEntropyForward(logits: logits, labels: labels, rows: rows,
                                                          classes: classes, smoothing: Double(smoothing))
            return PreparedOp(
                expected: [ExpectedOutput("probs", reference.probs, Tolerance.reduction),
                           ExpectedOutput("losses", reference.losses, Tolerance.reduction)],
                run: { backend in
                    let probs = try backend.allocate(rows * classes)
                    let losses = try backend.allocate(rows)
                    try backend.crossEntropyForward(logits: backend.buffer(logits), labels: backend.indexBuffer(labels),
                                                    probs: probs, losses: losses, rows: rows, classes: classes,
                                                    smoothing: smoothing)
                    return [try backend.values(probs), try backend.values(losses)]
                })
        }
    }

    static func crossEntropyBackwardRow(smoothing: Float) -> OpCase {
        OpCase("crossEntropyBackward 7×37, smoothing \(smoothing), scale 0.7") { rng in
            let (rows, classes, scale) = (7, 37, Float(0.7))
            let logits = rng.values(rows * classes, in: -6 ... 6)
            let labels = (0 ..< rows).map { _ in Int.random(in: 0 ..< classes, using: &rng) }
            let forward = Reference.crossEntropyForward(logits: logits, labels: labels, rows: rows, classes: classes,
                                                        smoothing: Double(smoothing))
            let dLogits = Reference.crossEntropyBackward(probs: forward.probs, labels: labels, rows: rows,
                                                         classes: classes, smoothing: Double(smoothing),
                                                         scale: Double(scale))
            let prefill = prefill(like: dLogits, &rng)
            let savedProbs = roundedToFloat(forward.probs)
            return PreparedOp(
                expected: [ExpectedOutput("dLogits", elementwiseSum(prefill, dLogits), Tolerance.reduction)],
                run: { backend in
                    let dLogitsBuffer = try backend.buffer(prefill)
                    try backend.crossEntropyBackward(probs: backend.buffer(savedProbs),
                                                     labels: backend.indexBuffer(labels), dLogits: dLogitsBuffer,
                                                     rows: rows, classes: classes, smoothing: smoothing, scale: scale)
                    return [try backend.values(dLogitsBuffer)]
                },
                gradientChecks: [
                    GradientCheck(name: "dLogits of scale·Σ losses", input: logits, analytic: dLogits) {
                        Double(scale) * Reference.sum(Reference.crossEntropyForward(
                            logits: $0, labels: labels, rows: rows, classes: classes,
                            smoothing: Double(smoothing)).losses)
                    },
                ])
        }
    }

    static func distillationForwardRow(rows: Int = 13, classes: Int = 37, temperature: Float,
                                       logits range: ClosedRange<Float> = -6 ... 6) -> OpCase {
        let extremes = range == -6 ... 6 ? "" : ", logits in \(range)"
        return OpCase("distillationForward \(rows)×\(classes), T \(temperature)\(extremes)") { rng in
            let student = rng.values(rows * classes, in: range)
            let teacher = rng.values(rows * classes, in: range)
            let reference = Reference.distillationForward(student: student, teacher: teacher, rows: rows,
                                                          classes: classes, temperature: Double(temperature))
            return PreparedOp(
                expected: [ExpectedOutput("studentProbs", reference.studentProbs, Tolerance.reduction),
                           ExpectedOutput("teacherProbs", reference.teacherProbs, Tolerance.reduction),
                           ExpectedOutput("losses", reference.losses, Tolerance.reduction)],
                run: { backend in
                    let studentProbs = try backend.allocate(rows * classes)
                    let teacherProbs = try backend.allocate(rows * classes)
                    let losses = try backend.allocate(rows)
                    try backend.distillationForward(student: backend.buffer(student), teacher: backend.buffer(teacher),
                                                    studentProbs: studentProbs, teacherProbs: teacherProbs,
                                                    losses: losses, rows: rows, classes: classes,
                                                    temperature: temperature)
                    return [try backend.values(studentProbs), try backend.values(teacherProbs),
                            try backend.values(losses)]
                })
        }
    }

    static func distillationBackwardRow(temperature: Float) -> OpCase {
        OpCase("distillationBackward 7×37, T \(temperature), scale 1.3") { rng in
            let (rows, classes, scale) = (7, 37, Float(1.3))
            let student = rng.values(rows * classes, in: -6 ... 6)
            let teacher = rng.values(rows * classes, in: -6 ... 6)
            let t = Double(temperature)
            let forward = Reference.distillationForward(student: student, teacher: teacher, rows: rows,
                                                        classes: classes, temperature: t)
            let dStudent = Reference.distillationBackward(studentProbs: forward.studentProbs,
                                                          teacherProbs: forward.teacherProbs, temperature: t,
                                                          scale: Double(scale))
            let prefill = prefill(like: dStudent, &rng)
            let savedStudent = roundedToFloat(forward.studentProbs)
            let savedTeacher = roundedToFloat(forward.teacherProbs)
            return PreparedOp(
                expected: [ExpectedOutput("dStudent", elementwiseSum(prefill, dStudent), Tolerance.reduction)],
                run: { backend in
                    let dStudentBuffer = try backend.buffer(prefill)
                    try backend.distillationBackward(studentProbs: backend.buffer(savedStudent),
                                                     teacherProbs: backend.buffer(savedTeacher),
                                                     dStudent: dStudentBuffer, rows: rows, classes: classes,
                                                     temperature: temperature, scale: scale)
                    return [try backend.values(dStudentBuffer)]
                },
                gradientChecks: [
                    GradientCheck(name: "dStudent of scale·Σ losses", input: student, analytic: dStudent) {
                        Double(scale) * Reference.sum(Reference.distillationForward(
                            student: $0, teacher: teacher, rows: rows, classes: classes, temperature: t).losses)
                    },
                ])
        }
    }

    // MARK: Statistics and reductions

    static let statistics: [OpCase] = [
        // Three batches of different sizes merged one after the other, against one two-pass float64 pass over all
        // rows; values around 5 with a spread of 1, where a float32 or one-pass merge would lose digits.
        columnStatisticsRow(batchRows: [13, 7, 37], cols: 37),
        // 10⁵ values around 3: a float32 running sum would be off by ~1e-4 relative.
        OpCase("sum of 100003 values in 2 ... 4") { rng in
            let x = rng.values(100_003, in: 2 ... 4)
            return PreparedOp(
                expected: [ExpectedOutput("sum", [Reference.sum(x)], Tolerance.float64)],
                run: { backend in [[try backend.sum(backend.buffer(x), count: x.count)]] })
        },
        OpCase("sumOfSquares of 100003 values in -1 ... 1") { rng in
            let x = rng.values(100_003)
            return PreparedOp(
                expected: [ExpectedOutput("sumOfSquares", [Reference.sumOfSquares(x)], Tolerance.float64)],
                run: { backend in [[try backend.sumOfSquares(backend.buffer(x), count: x.count)]] })
        },
    ]

    // MARK: Optimizer

    static let optimizer: [OpCase] = [
        adamwRow(step: 1, weightDecay: 0.05, masked: false),
        adamwRow(step: 7, weightDecay: 0.05, masked: true),
        adamwRow(step: 7, weightDecay: 0, masked: false),
    ]

    static func adamwRow(step: Int, weightDecay: Float, masked: Bool) -> OpCase {
        OpCase("adamwStep 1001 elements, step \(step), weight decay \(weightDecay)\(masked ? ", masked" : "")") { rng in
            let count = 1001
            let hyper = AdamWHyperparameters(learningRate: 0.01, weightDecay: weightDecay, step: step)
            let param = rng.values(count)
            let grad = rng.values(count)
            // Step 1 starts from zero moments, as in training; later steps from moments that have seen gradients.
            let m = step == 1 ? [Double](repeating: 0, count: count) : rng.values(count, in: -0.1 ... 0.1)
            let v = step == 1 ? [Double](repeating: 0, count: count) : rng.values(count, in: 0 ... 0.01)
            let mask: [Double]? = masked ? (0 ..< count).map { _ in Double.random(in: 0 ..< 1, using: &rng) < 0.3 ? 0 : 1 } : nil
            let reference = Reference.adamwStep(param: param, grad: grad, m: m, v: v, mask: mask, hyper: hyper)
            return PreparedOp(
                expected: [ExpectedOutput("param", reference.param, Tolerance.elementwise),
                           ExpectedOutput("m", reference.m, Tolerance.elementwise),
                           ExpectedOutput("v", reference.v, Tolerance.elementwise)],
                run: { backend in
                    let paramBuffer = try backend.buffer(param)
                    let mBuffer = try backend.buffer(m)
                    let vBuffer = try backend.buffer(v)
                    try backend.adamwStep(param: paramBuffer, grad: backend.buffer(grad), m: mBuffer, v: vBuffer,
                                          mask: mask.map { try backend.buffer($0) }, count: count, hyper: hyper)
                    return [try backend.values(paramBuffer), try backend.values(mBuffer), try backend.values(vBuffer)]
                })
        }
    }

    // MARK: Gather / scatter

    static let gatherScatter: [OpCase] = [
        OpCase("gather 101 of 197 elements by distinct random indices") { rng in
            let src = rng.values(197)
            let indices = rng.distinctIndices(101, below: src.count)
            return PreparedOp(
                expected: [ExpectedOutput("dst", Reference.gather(src: src, indices: indices), Tolerance.exact)],
                run: { backend in
                    let dst = try backend.allocate(indices.count)
                    try backend.gather(src: backend.buffer(src), indices: backend.indexBuffer(indices), dst: dst,
                                       count: indices.count)
                    return [try backend.values(dst)]
                })
        },
        // scatterAdd is gather's adjoint: its finite-difference check is the gradient of Σ src·gather(x).
        OpCase("scatterAdd 101 elements into 197 by distinct random indices") { rng in
            let dstCount = 197
            let src = rng.values(101)
            let indices = rng.distinctIndices(src.count, below: dstCount)
            let contribution = Reference.scatterAdd(src: src, indices: indices, count: dstCount)
            let prefill = rng.values(dstCount)
            let x = rng.values(dstCount)
            return PreparedOp(
                expected: [ExpectedOutput("dst", elementwiseSum(prefill, contribution), Tolerance.elementwise)],
                run: { backend in
                    let dst = try backend.buffer(prefill)
                    try backend.scatterAdd(src: backend.buffer(src), indices: backend.indexBuffer(indices), dst: dst,
                                           count: src.count)
                    return [try backend.values(dst)]
                },
                gradientChecks: [
                    GradientCheck(name: "scatterAdd as the gradient of Σ src·gather(x)", input: x,
                                  analytic: contribution) {
                        dot(src, Reference.gather(src: $0, indices: indices))
                    },
                ])
        },
    ]

    // MARK: Channel masks

    /// `x[r, c]·mask[c]`, written plainly.
    static func scaledColumns(_ x: [Double], mask: [Double], rows: Int, cols: Int) -> [Double] {
        (0 ..< rows * cols).map { x[$0] * mask[$0 % cols] }
    }

    /// `Σ_r x[r, c]·dY[r, c]` per column.
    static func columnDots(_ x: [Double], _ dY: [Double], rows: Int, cols: Int) -> [Double] {
        (0 ..< cols).map { c in (0 ..< rows).reduce(0.0) { $0 + x[$1 * cols + c] * dY[$1 * cols + c] } }
    }

    static let masks: [OpCase] = [
        maskedLayerNormRow(rows: 13, cols: 37, eps: 1e-6),
        maskedLayerNormRow(rows: 7, cols: 13, eps: 1e-5),
        OpCase("scaleColumns 37×13 into another buffer, soft and zero entries") { rng in
            let (rows, cols) = (37, 13)
            let x = rng.values(rows * cols)
            var mask = rng.values(cols, in: 0 ... 1.5)
            mask[4] = 0
            return PreparedOp(
                expected: [ExpectedOutput("out", scaledColumns(x, mask: mask, rows: rows, cols: cols),
                                          Tolerance.elementwise)],
                run: { backend in
                    let out = try backend.allocate(rows * cols)
                    try backend.scaleColumns(backend.buffer(x), mask: backend.buffer(mask), out: out, rows: rows,
                                             cols: cols)
                    return [try backend.values(out)]
                })
        },
        OpCase("scaleColumns in place 197×37") { rng in
            let (rows, cols) = (197, 37)
            let x = rng.values(rows * cols)
            let mask = rng.values(cols, in: 0 ... 1.5)
            return PreparedOp(
                expected: [ExpectedOutput("x", scaledColumns(x, mask: mask, rows: rows, cols: cols),
                                          Tolerance.elementwise)],
                run: { backend in
                    let xBuffer = try backend.buffer(x)
                    try backend.scaleColumns(xBuffer, mask: backend.buffer(mask), out: xBuffer, rows: rows, cols: cols)
                    return [try backend.values(xBuffer)]
                })
        },
        // 1301 rows: several row tiles of the OpenCL kernel's first stage, the last one partial.
        OpCase("maskGradient 1301×37 accumulates Σ_r x·dY, checked as the gradient of Σ dY·(x∘mask)") { rng in
            let (rows, cols) = (1301, 37)
            let x = rng.values(rows * cols)
            let dY = rng.values(rows * cols)
            let mask = rng.values(cols, in: 0 ... 1.5)
            let dMask = columnDots(x, dY, rows: rows, cols: cols)
            let prefill = rng.values(cols, in: -5 ... 5)
            return PreparedOp(
                expected: [ExpectedOutput("dMask", elementwiseSum(prefill, dMask), Tolerance.reduction)],
                run: { backend in
                    let dMaskBuffer = try backend.buffer(prefill)
                    try backend.maskGradient(x: backend.buffer(x), dY: backend.buffer(dY), dMask: dMaskBuffer,
                                             rows: rows, cols: cols)
                    return [try backend.values(dMaskBuffer)]
                },
                gradientChecks: [
                    GradientCheck(name: "dMask", input: mask, analytic: dMask) {
                        dot(dY, scaledColumns(x, mask: $0, rows: rows, cols: cols))
                    },
                ])
        },
        OpCase("scaleRows 37×13, soft and zero entries") { rng in
            let (rows, cols) = (37, 13)
            let x = rng.values(rows * cols)
            var mask = rng.values(rows, in: 0 ... 1.5)
            mask[5] = 0
            return PreparedOp(
                expected: [ExpectedOutput("out", (0 ..< rows * cols).map { x[$0] * mask[$0 / cols] },
                                          Tolerance.elementwise)],
                run: { backend in
                    let out = try backend.allocate(rows * cols)
                    try backend.scaleRows(backend.buffer(x), mask: backend.buffer(mask), out: out, rows: rows,
                                          cols: cols)
                    return [try backend.values(out)]
                })
        },
        OpCase("maskGradientRows 37×197 accumulates Σ_c x·dY, checked as the gradient of Σ dY·(mask∘x)") { rng in
            let (rows, cols) = (37, 197)
            let x = rng.values(rows * cols)
            let dY = rng.values(rows * cols)
            let mask = rng.values(rows, in: 0 ... 1.5)
            let dMask = (0 ..< rows).map { r in (0 ..< cols).reduce(0.0) { $0 + x[r * cols + $1] * dY[r * cols + $1] } }
            let prefill = rng.values(rows, in: -5 ... 5)
            return PreparedOp(
                expected: [ExpectedOutput("dMask", elementwiseSum(prefill, dMask), Tolerance.reduction)],
                run: { backend in
                    let dMaskBuffer = try backend.buffer(prefill)
                    try backend.maskGradientRows(x: backend.buffer(x), dY: backend.buffer(dY), dMask: dMaskBuffer,
                                                 rows: rows, cols: cols)
                    return [try backend.values(dMaskBuffer)]
                },
                gradientChecks: [
                    GradientCheck(name: "dMask", input: mask, analytic: dMask) { m in
                        dot(dY, (0 ..< rows * cols).map { x[$0] * m[$0 / cols] })
                    },
                ])
        },
        // One mask value per (head, dim) of 3 heads × 5 dims, each on a q, k and v column, plus two empty segments.
        OpCase("segmentSum 17 segments over 45 columns, repeated members, empty segments") { rng in
            let src = rng.values(45)
            var members: [[Int]] = (0 ..< 15).map { [$0, 15 + $0, 30 + $0] }
            members += [[], [7, 7]]
            let offsets = members.reduce(into: [0]) { $0.append($0.last! + $1.count) }
            let prefill = rng.values(members.count)
            let expected = zip(prefill, members).map { start, group in group.reduce(start) { $0 + src[$1] } }
            return PreparedOp(
                expected: [ExpectedOutput("dst", expected, Tolerance.reduction)],
                run: { backend in
                    let dst = try backend.buffer(prefill)
                    try backend.segmentSum(backend.buffer(src), offsets: backend.indexBuffer(offsets),
                                           members: backend.indexBuffer(members.flatMap { $0 }), dst: dst,
                                           segments: members.count)
                    return [try backend.values(dst)]
                })
        },
        OpCase("addScaledSign alpha -0.3 on 197 elements with zeros; sumOfAbs") { rng in
            var x = rng.values(197)
            for i in stride(from: 0, to: 197, by: 13) { x[i] = 0 }
            let y = rng.values(197)
            let expected = zip(x, y).map { $1 + ($0 > 0 ? -0.3 : $0 < 0 ? 0.3 : 0) }
            return PreparedOp(
                expected: [ExpectedOutput("y", expected.map { Double(Float($0)) }, Tolerance.elementwise),
                           ExpectedOutput("Σ|x|", [x.reduce(0) { $0 + abs($1) }], Tolerance.reduction)],
                run: { backend in
                    let xBuffer = try backend.buffer(x), yBuffer = try backend.buffer(y)
                    try backend.addScaledSign(xBuffer, alpha: -0.3, y: yBuffer, count: 197)
                    return [try backend.values(yBuffer), [try backend.sumOfAbs(xBuffer, count: 197)]]
                })
        },
        OpCase("maskGradient 7×3") { rng in
            let (rows, cols) = (7, 3)
            let x = rng.values(rows * cols)
            let dY = rng.values(rows * cols)
            let dMask = columnDots(x, dY, rows: rows, cols: cols)
            return PreparedOp(
                expected: [ExpectedOutput("dMask", dMask, Tolerance.reduction)],
                run: { backend in
                    let dMaskBuffer = try backend.zeros(cols)
                    try backend.maskGradient(x: backend.buffer(x), dY: backend.buffer(dY), dMask: dMaskBuffer,
                                             rows: rows, cols: cols)
                    return [try backend.values(dMaskBuffer)]
                })
        },
    ]

    /// The reference of a masked LayerNorm: the plain reference on the kept columns, 0 elsewhere.
    static func maskedLayerNorm(x: [Double], gamma: [Double], beta: [Double], kept: [Int], rows: Int, cols: Int,
                                eps: Double) -> (out: [Double], mean: [Double], rstd: [Double]) {
        let k = kept.count
        let reference = Reference.layerNormForward(
            x: (0 ..< rows).flatMap { r in kept.map { x[r * cols + $0] } }, gamma: kept.map { gamma[$0] },
            beta: kept.map { beta[$0] }, rows: rows, cols: k, eps: eps)
        var out = [Double](repeating: 0, count: rows * cols)
        for r in 0 ..< rows { for (j, c) in kept.enumerated() { out[r * cols + c] = reference.out[r * k + j] } }
        return (out, reference.mean, reference.rstd)
    }

    /// Forward and backward of the LayerNorm over kept channels, with finite-difference checks of the backward.
    /// `keptCount` kept columns, two thirds by default.
    static func maskedLayerNormRow(rows: Int, cols: Int, eps: Float, kept keptCount: Int? = nil) -> OpCase {
        let keptNote = keptCount.map { ", \($0) kept" } ?? ""
        return OpCase("maskedLayerNorm forward and backward \(rows)×\(cols), eps \(eps)\(keptNote)") { rng in
            let x = rng.values(rows * cols, in: -2 ... 3)
            let gamma = rng.values(cols, in: 0.5 ... 1.5)
            let beta = rng.values(cols)
            let dOut = rng.values(rows * cols)
            let kept = rng.distinctIndices(keptCount ?? cols * 2 / 3, below: cols).sorted()
            let keep = (0 ..< cols).map { kept.contains($0) ? 1.0 : 0.0 }
            let forward = maskedLayerNorm(x: x, gamma: gamma, beta: beta, kept: kept, rows: rows, cols: cols,
                                          eps: Double(eps))
            func out(_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> [Double] {
                maskedLayerNorm(x: x, gamma: gamma, beta: beta, kept: kept, rows: rows, cols: cols,
                                eps: Double(eps)).out
            }
            // The backward of the kept columns is the plain one on the gathered columns; removed columns get 0.
            let k = kept.count
            let gathered = Reference.layerNormBackward(
                dOut: (0 ..< rows).flatMap { r in kept.map { dOut[r * cols + $0] } },
                x: (0 ..< rows).flatMap { r in kept.map { x[r * cols + $0] } }, gamma: kept.map { gamma[$0] },
                mean: forward.mean, rstd: forward.rstd, rows: rows, cols: k)
            var dX = [Double](repeating: 0, count: rows * cols)
            var dGamma = [Double](repeating: 0, count: cols), dBeta = [Double](repeating: 0, count: cols)
            for (j, c) in kept.enumerated() {
                dGamma[c] = gathered.dGamma[j]
                dBeta[c] = gathered.dBeta[j]
                for r in 0 ..< rows { dX[r * cols + c] = gathered.dX[r * k + j] }
            }
            let prefillX = prefill(like: dX, &rng)
            return PreparedOp(
                expected: [
                    ExpectedOutput("out", forward.out, Tolerance.reduction),
                    ExpectedOutput("mean", forward.mean, Tolerance.reduction),
                    ExpectedOutput("rstd", forward.rstd, Tolerance.reduction),
                    ExpectedOutput("dX", elementwiseSum(prefillX, dX), Tolerance.reduction),
                    ExpectedOutput("dGamma", dGamma, Tolerance.reduction),
                    ExpectedOutput("dBeta", dBeta, Tolerance.reduction),
                ],
                run: { backend in
                    let outBuffer = try backend.allocate(rows * cols)
                    let mean = try backend.allocate(rows), rstd = try backend.allocate(rows)
                    let xBuffer = try backend.buffer(x), gammaBuffer = try backend.buffer(gamma)
                    let keepBuffer = try backend.buffer(keep)
                    try backend.maskedLayerNormForward(x: xBuffer, gamma: gammaBuffer, beta: backend.buffer(beta),
                                                       keep: keepBuffer, out: outBuffer, mean: mean, rstd: rstd,
                                                       rows: rows, cols: cols, eps: eps)
                    let dXBuffer = try backend.buffer(prefillX)
                    let dGammaBuffer = try backend.zeros(cols), dBetaBuffer = try backend.zeros(cols)
                    try backend.maskedLayerNormBackward(dOut: backend.buffer(dOut), x: xBuffer, gamma: gammaBuffer,
                                                        keep: keepBuffer, mean: mean, rstd: rstd, dX: dXBuffer,
                                                        dGamma: dGammaBuffer, dBeta: dBetaBuffer, rows: rows,
                                                        cols: cols)
                    return [try backend.values(outBuffer), try backend.values(mean), try backend.values(rstd),
                            try backend.values(dXBuffer), try backend.values(dGammaBuffer),
                            try backend.values(dBetaBuffer)]
                },
                gradientChecks: [
                    GradientCheck(name: "dX", input: x, analytic: dX) { dot(dOut, out($0, gamma, beta)) },
                    GradientCheck(name: "dGamma", input: gamma, analytic: dGamma) { dot(dOut, out(x, $0, beta)) },
                    GradientCheck(name: "dBeta", input: beta, analytic: dBeta) { dot(dOut, out(x, gamma, $0)) },
                ])
        }
    }
}
