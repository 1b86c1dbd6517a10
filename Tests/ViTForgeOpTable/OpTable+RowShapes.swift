import ViTForgeDevice

// Op-table rows at the shapes where the OpenCL kernel shapes split the work differently (OpenCLKernelShape): a
// work-group per row strides its columns by the local size (64), so one column, 37, 197 and 769 (> 64·12) columns
// and single or odd rows; two-stage column reductions cut rows into tiles of 64, so 1, 131 (two full tiles and a
// partial one) and 197 rows. Both shapes run every row on PoCL (`TestBackends`), the GPU one forced.

extension OpCase {
    static let rowShapes: [OpCase] = [
        layerNormForwardRow(rows: 1, cols: 769, eps: 1e-5, inputs: -3 ... 5),
        // One column: the mean is the value, the variance 0, so out = beta and rstd = 1/√eps.
        layerNormForwardRow(rows: 5, cols: 1, eps: 1e-5, inputs: -3 ... 5),
        residualLayerNormForwardRow(rows: 3, cols: 769, eps: 1e-5, residuals: -3 ... 5, sumInto: .branch),
        residualLayerNormForwardRow(rows: 5, cols: 1, eps: 1e-5, residuals: -3 ... 5, sumInto: .separate),
        layerNormBackwardRow(rows: 1, cols: 769, eps: 1e-5, inputs: -3 ... 5),
        layerNormBackwardRow(rows: 131, cols: 37, eps: 1e-5, inputs: -3 ... 5),
        // Fewer kept columns than work-items in a group: most work-items of a row see none.
        maskedLayerNormRow(rows: 131, cols: 197, eps: 1e-5, kept: 3),
        maskedLayerNormRow(rows: 3, cols: 769, eps: 1e-6, kept: 501),
        softmaxForwardRow(rows: 3, cols: 769, scale: 0.5, inputs: -20 ... 20),
        softmaxForwardRow(rows: 7, cols: 1, scale: 1, inputs: -3 ... 3),
        softmaxBackwardRow(rows: 1, cols: 769, scale: 0.125),
        softmaxBackwardRow(rows: 131, cols: 197, scale: 1),
        crossEntropyForwardRow(rows: 1, classes: 1000, smoothing: 0.1),
        crossEntropyForwardRow(rows: 67, classes: 10, smoothing: 0),
        crossEntropyForwardRow(rows: 5, classes: 1, smoothing: 0),
        // Logits tens of thousands apart: every probability but the largest underflows to 0, the loss stays finite.
        crossEntropyForwardRow(rows: 7, classes: 1000, smoothing: 0, logits: -30000 ... 30000),
        crossEntropyForwardRow(rows: 7, classes: 1000, smoothing: 0.1, logits: -30000 ... 30000),
        // −Inf logits (a class masked out): probability 0; with smoothing the loss is +Inf (log 0 in the uniform
        // part). Without smoothing 0·(−Inf) makes it NaN on every backend, which this row does not pin down.
        crossEntropyForwardRow(rows: 5, classes: 37, smoothing: 0.1, negativeInfinities: true),
        distillationForwardRow(rows: 1, classes: 1000, temperature: 2),
        distillationForwardRow(rows: 67, classes: 10, temperature: 4),
        distillationForwardRow(rows: 5, classes: 1000, temperature: 1, logits: -30000 ... 30000),
        addBiasBackwardRow(rows: 1, cols: 769),
        addBiasBackwardRow(rows: 131, cols: 1),
        columnStatisticsRow(batchRows: [197, 1, 70], cols: 37),
        columnStatisticsRow(batchRows: [131], cols: 1),
    ]

    static func softmaxForwardRow(rows: Int, cols: Int, scale: Float, inputs: ClosedRange<Float>) -> OpCase {
        OpCase("softmaxForward \(rows)×\(cols), scale \(scale)") { rng in
            let x = rng.values(rows * cols, in: inputs)
            return PreparedOp(
                expected: [ExpectedOutput("out", Reference.softmaxForward(x: x, rows: rows, cols: cols,
                                                                          scale: Double(scale)), Tolerance.reduction)],
                run: { backend in
                    let out = try backend.allocate(rows * cols)
                    try backend.softmaxForward(x: backend.buffer(x), out: out, rows: rows, cols: cols, scale: scale)
                    return [try backend.values(out)]
                })
        }
    }

    static func softmaxBackwardRow(rows: Int, cols: Int, scale: Float) -> OpCase {
        OpCase("softmaxBackward \(rows)×\(cols), scale \(scale)") { rng in
            let x = rng.values(rows * cols, in: -6 ... 6)
            let dOut = rng.values(rows * cols)
            let y = Reference.softmaxForward(x: x, rows: rows, cols: cols, scale: Double(scale))
            let dX = Reference.softmaxBackward(dOut: dOut, out: y, rows: rows, cols: cols, scale: Double(scale))
            let prefill = prefill(like: dX, &rng)
            let savedY = roundedToFloat(y)
            return PreparedOp(
                expected: [ExpectedOutput("dX", elementwiseSum(prefill, dX), Tolerance.reduction)],
                run: { backend in
                    let dXBuffer = try backend.buffer(prefill)
                    try backend.softmaxBackward(dOut: backend.buffer(dOut), out: backend.buffer(savedY), dX: dXBuffer,
                                                rows: rows, cols: cols, scale: scale)
                    return [try backend.values(dXBuffer)]
                },
                gradientChecks: [
                    GradientCheck(name: "dX", input: x, analytic: dX) {
                        dot(dOut, Reference.softmaxForward(x: $0, rows: rows, cols: cols, scale: Double(scale)))
                    },
                ])
        }
    }

    static func addBiasBackwardRow(rows: Int, cols: Int) -> OpCase {
        OpCase("addBiasBackward \(rows)×\(cols)") { rng in
            let x = rng.values(rows * cols)
            let bias = rng.values(cols)
            let dOut = rng.values(rows * cols)
            let dBias = Reference.addBiasBackward(dOut: dOut, rows: rows, cols: cols)
            let prefill = rng.values(cols, in: -5 ... 5)
            return PreparedOp(
                expected: [ExpectedOutput("dBias", elementwiseSum(prefill, dBias), Tolerance.reduction)],
                run: { backend in
                    let dBiasBuffer = try backend.buffer(prefill)
                    try backend.addBiasBackward(dOut: backend.buffer(dOut), dBias: dBiasBuffer, rows: rows, cols: cols)
                    return [try backend.values(dBiasBuffer)]
                },
                gradientChecks: [
                    GradientCheck(name: "dBias", input: bias, analytic: dBias) {
                        dot(dOut, Reference.addBias(x, bias: $0, rows: rows, cols: cols))
                    },
                ])
        }
    }

    /// Batches of `batchRows` rows merged one after the other, against one two-pass float64 pass over all rows;
    /// values around 5 with a spread of 1, where a float32 or one-pass merge would lose digits.
    static func columnStatisticsRow(batchRows: [Int], cols: Int) -> OpCase {
        let counts = batchRows.count == 1 ? "a batch of \(batchRows[0])"
            : "batches of " + batchRows.dropLast().map(String.init).joined(separator: ", ") + " and \(batchRows.last!)"
        return OpCase("columnStatistics over \(counts) rows × \(cols) columns") { rng in
            let batches = batchRows.map { rng.values($0 * cols, in: 4 ... 6) }
            let all = batches.flatMap { $0 }
            let reference = Reference.columnStatistics(all, rows: all.count / cols, cols: cols)
            return PreparedOp(
                expected: [ExpectedOutput("state (float64 mean, M2)", reference.mean + reference.m2, Tolerance.float64)],
                run: { backend in
                    let state = try backend.zeros(ColumnStatistics.stateCount(cols))
                    var merged = 0
                    for (rows, batch) in zip(batchRows, batches) {
                        try backend.columnStatisticsAccumulate(x: backend.buffer(batch), rows: rows, cols: cols,
                                                               state: state, countBefore: merged)
                        merged += rows
                    }
                    return [try backend.float64Values(state, doubles: 2 * cols)]
                })
        }
    }
}
