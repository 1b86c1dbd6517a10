#if canImport(Glibc)
import Glibc
#endif

// LayerNorm and softmax: one row at a time, row statistics in float64.

extension CPUBackend {
    public func uncheckedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer,
                                          rstd: Buffer, rows: Int, cols: Int, eps: Float) throws
    {
        let (x, gamma, beta, out) = (pointer(x), pointer(gamma), pointer(beta), pointer(out))
        let (mean, rstd) = (pointer(mean), pointer(rstd))
        guard cols > 0 else { return }
        parallelChunks(rows, costPerItem: 4 * cols) { rowRange in
            layerNormRows(x, gamma, beta, out, mean, rstd, rows: rowRange, cols: cols, eps: eps)
        }
    }

    public func uncheckedResidualLayerNormForward(residual: Buffer, branch: Buffer, bias: Buffer, sum: Buffer,
                                                  gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer,
                                                  rstd: Buffer, rows: Int, cols: Int, eps: Float) throws
    {
        let (residual, branch, bias, sum) = (pointer(residual), pointer(branch), pointer(bias), pointer(sum))
        let (gamma, beta, out) = (pointer(gamma), pointer(beta), pointer(out))
        let (mean, rstd) = (pointer(mean), pointer(rstd))
        guard cols > 0 else { return }
        parallelChunks(rows, costPerItem: 5 * cols) { rowRange in
            // A group of rows at a time: their sums are still in L1 when the LayerNorm reads them.
            var first = rowRange.lowerBound
            while first < rowRange.upperBound {
                let group = first ..< min(first + layerNormGroupRows, rowRange.upperBound)
                for r in group {
                    let (a, b, total) = (residual + r * cols, branch + r * cols, sum + r * cols)
                    for c in 0 ..< cols { total[c] = a[c] + (b[c] + bias[c]) }
                }
                layerNormRows(sum, gamma, beta, out, mean, rstd, rows: group, cols: cols, eps: eps)
                first = group.upperBound
            }
        }
    }

    public func uncheckedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, mean: Buffer, rstd: Buffer,
                                           dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws
    {
        let (dOut, x, gamma, mean) = (pointer(dOut), pointer(x), pointer(gamma), pointer(mean))
        let (rstd, dX, dGamma, dBeta) = (pointer(rstd), pointer(dX), pointer(dGamma), pointer(dBeta))
        guard cols > 0 else { return }

        // dX, row by row: with x̂ = (x − mean)·rstd and g = dOut·gamma,
        // dX = rstd · (g − mean(g) − x̂·mean(g·x̂)).
        // The two row sums are 8 float32 partial sums per row (cols/8 terms each), added in float64, as in softmax:
        // one float64 chain per element was latency-bound and the largest non-GEMM cost of an fm-vit-c training
        // step after GELU (perf: 2.9% of the step for this loop, 1.8% for the column loop below, before).
        let full = cols & ~7
        parallelChunks(rows, costPerItem: 6 * cols) { rowRange in
            for r in rowRange {
                let offset = r * cols
                let m = mean[r]
                let s = rstd[r]
                var sumsG = FloatVector()
                var sumsGXhat = FloatVector()
                var c = 0
                while c < full {
                    let g = loadVector(dOut + offset + c) * loadVector(gamma + c)
                    sumsG += g
                    sumsGXhat += g * ((loadVector(x + offset + c) - m) * s)
                    c += 8
                }
                var sumG = 0.0
                var sumGXhat = 0.0
                for lane in 0 ..< 8 {
                    sumG += Double(sumsG[lane])
                    sumGXhat += Double(sumsGXhat[lane])
                }
                for c in full ..< cols {
                    let g = dOut[offset + c] * gamma[c]
                    sumG += Double(g)
                    sumGXhat += Double(g * ((x[offset + c] - m) * s))
                }
                let meanG = Float(sumG / Double(cols))
                let meanGXhat = Float(sumGXhat / Double(cols))
                for c in 0 ..< cols {
                    let xhat = (x[offset + c] - m) * s
                    dX[offset + c] += s * (dOut[offset + c] * gamma[c] - meanG - xhat * meanGXhat)
                }
            }
        }
        // dGamma and dBeta sum over the rows: split over columns so each worker owns its share, float64 sums (two
        // separate scratch arrays, so that the compiler sees no overlap and vectorises the column loop).
        parallelChunks(cols, costPerItem: 3 * rows) { colRange in
            let width = colRange.count
            withUnsafeTemporaryAllocation(of: Double.self, capacity: width) { sumsGamma in
                withUnsafeTemporaryAllocation(of: Double.self, capacity: width) { sumsBeta in
                    let gammaSums = sumsGamma.baseAddress!
                    let betaSums = sumsBeta.baseAddress!
                    gammaSums.initialize(repeating: 0, count: width)
                    betaSums.initialize(repeating: 0, count: width)
                    for r in 0 ..< rows {
                        let rowOut = dOut + r * cols + colRange.lowerBound
                        let rowX = x + r * cols + colRange.lowerBound
                        let m = mean[r]
                        let s = rstd[r]
                        for j in 0 ..< width {
                            let d = rowOut[j]
                            gammaSums[j] += Double(d * (rowX[j] - m) * s)
                            betaSums[j] += Double(d)
                        }
                    }
                    for j in 0 ..< width {
                        dGamma[colRange.lowerBound + j] += Float(gammaSums[j])
                        dBeta[colRange.lowerBound + j] += Float(betaSums[j])
                    }
                }
            }
        }
    }

    public func uncheckedSoftmaxForward(x: Buffer, out: Buffer, rows: Int, cols: Int, scale: Float) throws {
        let x = pointer(x)
        let out = pointer(out)
        guard cols > 0 else { return }
        parallelChunks(rows, costPerItem: 4 * cols) { rowRange in
            for r in rowRange { _ = softmaxRow(x + r * cols, out + r * cols, cols, scale: scale) }
        }
    }

    public func uncheckedSoftmaxBackward(dOut: Buffer, out: Buffer, dX: Buffer, rows: Int, cols: Int,
                                         scale: Float) throws {
        let dOut = pointer(dOut)
        let y = pointer(out)
        let dX = pointer(dX)
        parallelChunks(rows, costPerItem: 4 * cols) { rowRange in
            for r in rowRange {
                let offset = r * cols
                let rowDot = Float(dotAsDouble(dOut + offset, y + offset, cols))
                for c in 0 ..< cols {
                    dX[offset + c] += scale * y[offset + c] * (dOut[offset + c] - rowDot)
                }
            }
        }
    }
}

/// Rows `layerNormRows` normalises together.
let layerNormGroupRows = 4

/// LayerNorm of `rows` of x [·, cols] into `out` (which may alias x), saving each row's mean and rstd: a group of
/// `layerNormGroupRows` rows at a time, one SIMD lane per row. Each row's float64 sums are added in the same order as
/// one row alone would add them (the mean as `sumAsDouble`, the squared deviations in one chain from column 0), so
/// the result does not depend on the grouping; the lanes only run the four rows' chains side by side, where one
/// row's chain alone was latency-bound (~5 cycles an element, 7% of an fm-vit-c forward at batch 64).
@inline(__always)
func layerNormRows(_ x: UnsafePointer<Float>, _ gamma: UnsafePointer<Float>, _ beta: UnsafePointer<Float>,
                   _ out: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>,
                   _ rstd: UnsafeMutablePointer<Float>, rows: Range<Int>, cols: Int, eps: Float) {
    var first = rows.lowerBound
    while first < rows.upperBound {
        let count = min(layerNormGroupRows, rows.upperBound - first)
        // Lanes past `count` repeat the group's last row: computed, never stored.
        let p0 = x + first * cols
        let p1 = x + (first + min(1, count - 1)) * cols
        let p2 = x + (first + min(2, count - 1)) * cols
        let p3 = x + (first + min(3, count - 1)) * cols
        @inline(__always) func column(_ c: Int) -> SIMD4<Double> {
            SIMD4(Double(p0[c]), Double(p1[c]), Double(p2[c]), Double(p3[c]))
        }
        // The mean: sumAsDouble's four partial sums, per lane.
        var s0 = SIMD4<Double>(), s1 = SIMD4<Double>(), s2 = SIMD4<Double>(), s3 = SIMD4<Double>()
        var i = 0
        while i + 4 <= cols {
            s0 += column(i)
            s1 += column(i + 1)
            s2 += column(i + 2)
            s3 += column(i + 3)
            i += 4
        }
        while i < cols {
            s0 += column(i)
            i += 1
        }
        let rowMeans = ((s0 + s1) + (s2 + s3)) / Double(cols)
        // Two passes (mean, then squared deviations): the one-pass E[x²] − E[x]² cancels badly for activations
        // with a large mean.
        var squares = SIMD4<Double>()
        for c in 0 ..< cols {
            let deviation = column(c) - rowMeans
            squares += deviation * deviation
        }
        for lane in 0 ..< count {
            let r = first + lane
            let input = x + r * cols
            let output = out + r * cols
            let rowMean = rowMeans[lane]
            let rowRstd = 1 / (squares[lane] / Double(cols) + Double(eps)).squareRoot()
            mean[r] = Float(rowMean)
            rstd[r] = Float(rowRstd)
            // x − mean in float: x − m is exact when x is near m (Sterbenz), and `residual` puts back what rounding
            // the mean to float lost, which otherwise dominates when the spread is small against the mean
            // (measured: 3e-6 → under 1e-6 relative error at mean 0.5, spread 0.01).
            let m = Float(rowMean)
            let residual = Float(rowMean - Double(m))
            let s = Float(rowRstd)
            for c in 0 ..< cols { output[c] = (input[c] - m - residual) * s * gamma[c] + beta[c] }
        }
        first += count
    }
}

/// `Σ p[i]` in float64, with 4 independent partial sums: the compiler keeps a floating-point sum in order (no
/// vectorising), and 4 chains hide the add latency.
@inline(__always)
func sumAsDouble(_ p: UnsafePointer<Float>, _ count: Int) -> Double {
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var i = 0
    while i + 4 <= count {
        s0 += Double(p[i])
        s1 += Double(p[i + 1])
        s2 += Double(p[i + 2])
        s3 += Double(p[i + 3])
        i += 4
    }
    while i < count {
        s0 += Double(p[i])
        i += 1
    }
    return (s0 + s1) + (s2 + s3)
}

/// `Σ p[i]²` in float64, as `sumAsDouble`.
@inline(__always)
func sumOfSquaresAsDouble(_ p: UnsafePointer<Float>, _ count: Int) -> Double {
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var i = 0
    while i + 4 <= count {
        let v0 = Double(p[i]), v1 = Double(p[i + 1]), v2 = Double(p[i + 2]), v3 = Double(p[i + 3])
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
        i += 4
    }
    while i < count {
        let v = Double(p[i])
        s0 += v * v
        i += 1
    }
    return (s0 + s1) + (s2 + s3)
}

/// `output[i] = exp(scale·input[i] − m)` with m the row's largest `scale·input[i]`; returns m and `Σ output[i]`.
/// Subtracting the maximum keeps exp in range; `output` may alias `input` (each element is read before it is
/// written). Vectorised exp (CPUBackend+VectorMath.swift), 8 float32 partial sums added in float64. `softmaxRow`'s
/// first half.
@inline(__always)
func exponentiateRow(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, _ cols: Int,
                     scale: Float) -> (maximum: Float, total: Double) {
    let full = cols & ~7
    let tail = cols - full
    var maxima = FloatVector(repeating: -.infinity)
    var c = 0
    while c < full {
        let v = scale * loadVector(input + c)
        maxima = maxima.replacing(with: v, where: v .> maxima)
        c += 8
    }
    var maximum = maxima.max()
    for i in full ..< cols { maximum = max(maximum, scale * input[i]) }
    var sums = FloatVector()
    c = 0
    while c < full {
        let e = vectorExp(scale * loadVector(input + c) - maximum)
        storeVector(e, output + c)
        sums += e
        c += 8
    }
    var total = 0.0
    for lane in 0 ..< 8 { total += Double(sums[lane]) }
    if tail > 0 {
        let e = vectorExp(scale * loadPartialVector(input + full, tail) - maximum)
        storePartialVector(e, output + full, tail)
        for lane in 0 ..< tail { total += Double(e[lane]) }
    }
    return (maximum, total)
}

/// `output = softmax(scale·input)` for one row (`output` may alias `input`); returns the row's log-sum-exp,
/// `log Σ exp(scale·input[i])`, which the fused attention saves for its backward.
@inline(__always)
func softmaxRow(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, _ cols: Int,
                scale: Float) -> Float {
    let (maximum, total) = exponentiateRow(input, output, cols, scale: scale)
    let inverse = Float(1 / total)
    for i in 0 ..< cols { output[i] *= inverse }
    return maximum + Float(log(total))
}

/// `row[i] = exp(row[i] − shift)` in place (the fused attention's backward: probabilities from saved log-sum-exps).
@inline(__always)
func exponentiateShifted(_ row: UnsafeMutablePointer<Float>, _ count: Int, shift: Float) {
    let full = count & ~7
    var c = 0
    while c < full {
        storeVector(vectorExp(loadVector(row + c) - shift), row + c)
        c += 8
    }
    if count > full {
        storePartialVector(vectorExp(loadPartialVector(row + full, count - full) - shift), row + full, count - full)
    }
}

/// `Σ a[i]·b[i]` with 8 float32 partial sums added in float64.
@inline(__always)
func dotAsDouble(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Double {
    let full = count & ~7
    var dots = FloatVector()
    var c = 0
    while c < full {
        dots += loadVector(a + c) * loadVector(b + c)
        c += 8
    }
    var dot = 0.0
    for lane in 0 ..< 8 { dot += Double(dots[lane]) }
    for i in full ..< count { dot += Double(a[i] * b[i]) }
    return dot
}

