#if canImport(Glibc)
import Glibc
#endif

// Elementwise and per-row operations whose rows are independent: bias, residual, scaling, masks, GELU.
// Inner loops run over unsafe pointers with no calls, which the compiler vectorises by itself.

extension CPUBackend {
    public func uncheckedAddBias(_ x: Buffer, bias: Buffer, rows: Int, cols: Int) throws {
        let x = pointer(x)
        let bias = pointer(bias)
        parallelChunks(rows, costPerItem: cols) { rowRange in
            for r in rowRange {
                let row = x + r * cols
                for c in 0 ..< cols { row[c] += bias[c] }
            }
        }
    }

    public func uncheckedAddBiasBackward(dOut: Buffer, dBias: Buffer, rows: Int, cols: Int) throws {
        let dOut = pointer(dOut)
        let dBias = pointer(dBias)
        // Split over columns so that each worker owns its share of dBias; float64 sums over the rows.
        parallelChunks(cols, costPerItem: rows) { colRange in
            withColumnSums(colRange, into: dBias) { sums in
                var r = 0
                while r < rows {
                    let group = min(columnSumGroupRows, rows - r)
                    addColumnSums(dOut + r * cols + colRange.lowerBound, rows: group, stride: cols,
                                  width: colRange.count, into: sums)
                    r += group
                }
            }
        }
    }

    public func uncheckedAdd(_ a: Buffer, _ b: Buffer, out: Buffer, count: Int) throws {
        let a = pointer(a)
        let b = pointer(b)
        let out = pointer(out)
        parallelChunks(count, costPerItem: 1) { elements in
            for i in elements { out[i] = a[i] + b[i] }
        }
    }

    public func uncheckedAxpy(alpha: Float, x: Buffer, y: Buffer, count: Int) throws {
        let x = pointer(x)
        let y = pointer(y)
        parallelChunks(count, costPerItem: 1) { elements in
            for i in elements { y[i] += alpha * x[i] }
        }
    }

    public func uncheckedScale(_ x: Buffer, by alpha: Float, count: Int) throws {
        let x = pointer(x)
        parallelChunks(count, costPerItem: 1) { elements in
            for i in elements { x[i] *= alpha }
        }
    }

    public func uncheckedBiasGeluForward(x: Buffer, bias: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let x = pointer(x)
        let bias = pointer(bias)
        let out = pointer(out)
        // Vectorised Φ (CPUBackend+VectorMath.swift): ~1 ns per element, so the threshold is the usual one.
        parallelChunks(rows, costPerItem: 4 * cols) { rowRange in
            for r in rowRange {
                let input = x + r * cols
                let output = out + r * cols
                var c = 0
                while c + 8 <= cols {
                    let u = loadVector(input + c) + loadVector(bias + c)
                    storeVector(u * vectorNormalCDF(u).cdf, output + c)
                    c += 8
                }
                if c < cols {
                    let u = loadPartialVector(input + c, cols - c) + loadPartialVector(bias + c, cols - c)
                    storePartialVector(u * vectorNormalCDF(u).cdf, output + c, cols - c)
                }
            }
        }
    }

    public func uncheckedBiasGeluBackward(dOut: Buffer, x: Buffer, bias: Buffer, dX: Buffer, rows: Int,
                                          cols: Int) throws {
        let (dOut, x, bias, dX) = (pointer(dOut), pointer(x), pointer(bias), pointer(dX))
        parallelChunks(rows, costPerItem: 6 * cols) { rowRange in
            for r in rowRange {
                let offset = r * cols
                geluBackwardRow(dOut + offset, x + offset, bias, dX + offset, cols)
            }
        }
    }

    public func uncheckedBiasGeluBackwardWithBiasGradient(dOut: Buffer, x: Buffer, bias: Buffer, dX: Buffer,
                                                          dBias: Buffer, rows: Int, cols: Int) throws {
        let (dOut, x, bias, dX, dBias) = (pointer(dOut), pointer(x), pointer(bias), pointer(dX), pointer(dBias))
        // Split over columns, as addBiasBackward, so that each worker owns its share of dBias: a group of rows of
        // dX is written and then summed while it is in L1 (fc1's bias gradient was a second pass over
        // [rows, hidden], part of addBiasBackward's 2.4% of an fm-vit-c training step). Per element the same
        // arithmetic as biasGeluBackward, per column the same float64 sums as addBiasBackward.
        parallelChunks(cols, costPerItem: 7 * rows) { colRange in
            let (first, width) = (colRange.lowerBound, colRange.count)
            withColumnSums(colRange, into: dBias) { sums in
                var r = 0
                while r < rows {
                    let group = min(columnSumGroupRows, rows - r)
                    for k in r ..< r + group {
                        let offset = k * cols + first
                        geluBackwardRow(dOut + offset, x + offset, bias + first, dX + offset, width)
                    }
                    addColumnSums(dX + r * cols + first, rows: group, stride: cols, width: width, into: sums)
                    r += group
                }
            }
        }
    }
}

/// `dX[c] += gelu'(x[c] + bias[c])·dOut[c]` for `count` elements of one row (`count` may be a slice of it).
/// d/du [u·Φ(u)] = Φ(u) + u·φ(u), φ(u) = e^(−u²/2)/√(2π) shares its exponential with Φ.
@inline(__always)
func geluBackwardRow(_ dOut: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
                     _ dX: UnsafeMutablePointer<Float>, _ count: Int) {
    let inverseSqrt2Pi = 1 / (2 * Float.pi).squareRoot()
    var c = 0
    while c + 8 <= count {
        let u = loadVector(x + c) + loadVector(bias + c)
        let (cdf, gaussian) = vectorNormalCDF(u)
        let derivative = cdf + u * (gaussian * inverseSqrt2Pi)
        storeVector(loadVector(dX + c) + derivative * loadVector(dOut + c), dX + c)
        c += 8
    }
    if c < count {
        let tail = count - c
        let u = loadPartialVector(x + c, tail) + loadPartialVector(bias + c, tail)
        let (cdf, gaussian) = vectorNormalCDF(u)
        let derivative = cdf + u * (gaussian * inverseSqrt2Pi)
        storePartialVector(loadPartialVector(dX + c, tail) + derivative * loadPartialVector(dOut + c, tail),
                           dX + c, tail)
    }
}

/// Rows `addColumnSums` adds to the sums at once.
let columnSumGroupRows = 4

/// Zeroed float64 sums for the columns `colRange`, handed to `body`, then added to `target[colRange]`.
@inline(__always)
func withColumnSums(_ colRange: Range<Int>, into target: UnsafeMutablePointer<Float>,
                    _ body: (UnsafeMutablePointer<Double>) -> Void) {
    withUnsafeTemporaryAllocation(of: Double.self, capacity: colRange.count) { buffer in
        let sums = buffer.baseAddress!
        sums.initialize(repeating: 0, count: colRange.count)
        body(sums)
        for j in 0 ..< colRange.count { target[colRange.lowerBound + j] += Float(sums[j]) }
    }
}

/// `sums[j] += Σ_k rows[k·stride + j]` for `rows` ≤ 4 rows. Four rows per pass over the sums: one row at a time
/// loaded and stored every float64 sum once per row (3.4% of an fm-vit-c training step, perf, for 22 M elements a
/// step). Four rows are added in float64 first (exact for most values: two floats' sum fits a double), then to the
/// sum; fewer (the last rows) one at a time. The order is the bias gradient's: the same whoever calls.
@inline(__always)
func addColumnSums(_ rows: UnsafePointer<Float>, rows count: Int, stride: Int, width: Int,
                   into sums: UnsafeMutablePointer<Double>) {
    if count == columnSumGroupRows {
        let (row0, row1, row2, row3) = (rows, rows + stride, rows + 2 * stride, rows + 3 * stride)
        for j in 0 ..< width {
            sums[j] += (Double(row0[j]) + Double(row1[j])) + (Double(row2[j]) + Double(row3[j]))
        }
    } else {
        for k in 0 ..< count {
            let row = rows + k * stride
            for j in 0 ..< width { sums[j] += Double(row[j]) }
        }
    }
}
