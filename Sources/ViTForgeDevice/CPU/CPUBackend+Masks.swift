// Channel masks: scaling columns in the forward, the masked-gradient path (one float64 sum per mask entry), and
// LayerNorm over the kept channels of a residual-width mask.

extension CPUBackend {
    public func uncheckedScaleColumns(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let x = pointer(x)
        let mask = pointer(mask)
        let out = pointer(out)
        parallelChunks(rows, costPerItem: cols) { rowRange in
            for r in rowRange {
                let source = x + r * cols, target = out + r * cols
                for c in 0 ..< cols { target[c] = source[c] * mask[c] }
            }
        }
    }

    public func uncheckedScaleRows(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let x = pointer(x)
        let mask = pointer(mask)
        let out = pointer(out)
        parallelChunks(rows, costPerItem: cols) { rowRange in
            for r in rowRange {
                let source = x + r * cols, target = out + r * cols, value = mask[r]
                for c in 0 ..< cols { target[c] = source[c] * value }
            }
        }
    }

    public func uncheckedMaskGradientRows(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let x = pointer(x)
        let dY = pointer(dY)
        let dMask = pointer(dMask)
        parallelChunks(rows, costPerItem: cols) { rowRange in
            for r in rowRange {
                let xRow = x + r * cols, dRow = dY + r * cols
                var sum = 0.0
                for c in 0 ..< cols { sum += Double(xRow[c] * dRow[c]) }
                dMask[r] += Float(sum)
            }
        }
    }

    public func uncheckedMaskGradient(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let x = pointer(x)
        let dY = pointer(dY)
        let dMask = pointer(dMask)
        // Split over columns so that each worker owns its share of dMask; float64 sums over the rows (12,608 rows
        // for DeiT at batch 64: a float32 chain would lose the small contributions).
        parallelChunks(cols, costPerItem: rows) { colRange in
            withUnsafeTemporaryAllocation(of: Double.self, capacity: colRange.count) { buffer in
                let sums = buffer.baseAddress!
                let width = colRange.count, first = colRange.lowerBound
                sums.initialize(repeating: 0, count: width)
                for r in 0 ..< rows {
                    let xRow = x + r * cols + first, dRow = dY + r * cols + first
                    for j in 0 ..< width { sums[j] += Double(xRow[j] * dRow[j]) }
                }
                for j in 0 ..< width { dMask[first + j] += Float(sums[j]) }
            }
        }
    }
}

// LayerNorm over the kept channels of a residual-width mask. Written plainly (float64 row statistics, one row at a
// time): it runs only while a method trains with a 0/1 residual mask, never in a plain model's step.
extension CPUBackend {
    public func uncheckedMaskedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, keep: Buffer, out: Buffer,
                                                mean: Buffer, rstd: Buffer, rows: Int, cols: Int, eps: Float) throws {
        let x = pointer(x), out = pointer(out)
        let gamma = pointer(gamma), beta = pointer(beta)
        let keep = pointer(keep)
        let mean = pointer(mean), rstd = pointer(rstd)
        parallelChunks(rows, costPerItem: 3 * cols) { rowRange in
            for r in rowRange {
                let row = x + r * cols, target = out + r * cols
                var sum = 0.0, kept = 0.0
                for c in 0 ..< cols where keep[c] != 0 {
                    sum += Double(row[c])
                    kept += 1
                }
                let m = Float(sum / kept)
                var squares = 0.0
                for c in 0 ..< cols where keep[c] != 0 {
                    let d = Double(row[c] - m)
                    squares += d * d
                }
                let inverse = Float(1 / (squares / kept + Double(eps)).squareRoot())
                for c in 0 ..< cols { target[c] = keep[c] != 0 ? (row[c] - m) * inverse * gamma[c] + beta[c] : 0 }
                mean[r] = m
                rstd[r] = inverse
            }
        }
    }

    public func uncheckedMaskedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, keep: Buffer, mean: Buffer,
                                                 rstd: Buffer, dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int,
                                                 cols: Int) throws {
        let dOut = pointer(dOut), x = pointer(x)
        let dX = pointer(dX)
        let gamma = pointer(gamma), keep = pointer(keep)
        let mean = pointer(mean), rstd = pointer(rstd)
        let dGamma = pointer(dGamma), dBeta = pointer(dBeta)
        // dX = rstd·(g − mean(g) − x̂·mean(g·x̂)) over the kept columns, g = dOut·gamma.
        parallelChunks(rows, costPerItem: 3 * cols) { rowRange in
            for r in rowRange {
                let base = r * cols
                let m = mean[r], s = rstd[r]
                var sumG = 0.0, sumGX = 0.0, kept = 0.0
                for c in 0 ..< cols where keep[c] != 0 {
                    let g = Double(dOut[base + c] * gamma[c])
                    sumG += g
                    sumGX += g * Double((x[base + c] - m) * s)
                    kept += 1
                }
                let meanG = Float(sumG / kept), meanGX = Float(sumGX / kept)
                for c in 0 ..< cols where keep[c] != 0 {
                    let g = dOut[base + c] * gamma[c]
                    dX[base + c] += s * (g - meanG - (x[base + c] - m) * s * meanGX)
                }
            }
        }
        for c in 0 ..< cols where keep[c] != 0 {
            var sumGamma = 0.0, sumBeta = 0.0
            for r in 0 ..< rows {
                let d = Double(dOut[r * cols + c])
                sumGamma += d * Double((x[r * cols + c] - mean[r]) * rstd[r])
                sumBeta += d
            }
            dGamma[c] += Float(sumGamma)
            dBeta[c] += Float(sumBeta)
        }
    }
}

// Reductions of learned masks: segment sums (a value's gradient from its columns'), the ℓ1 subgradient and value.
extension CPUBackend {
    public func uncheckedSegmentSum(_ src: Buffer, offsets: Buffer, members: Buffer, dst: Buffer,
                                    segments: Int) throws {
        let source = pointer(src)
        let starts = int32s(offsets)
        let indices = int32s(members)
        let target = pointer(dst)
        // Offsets and members are device memory (`Backend`'s contract): as on OpenCL, a member outside src, or a
        // position outside members, adds NaN to its segment instead of reading outside the buffers.
        for s in 0 ..< segments {
            let (first, end) = (Int(starts[s]), Int(starts[s + 1]))
            var sum = 0.0
            if first < end {
                for k in first ..< end {
                    let member = k >= 0 && k < members.count ? Int(indices[k]) : -1
                    sum += member >= 0 && member < src.count ? Double(source[member]) : .nan
                }
            }
            target[s] += Float(sum)
        }
    }

    public func uncheckedAddScaledSign(_ x: Buffer, alpha: Float, y: Buffer, count: Int) throws {
        let x = pointer(x), y = pointer(y)
        for i in 0 ..< count { y[i] += x[i] > 0 ? alpha : x[i] < 0 ? -alpha : 0 }
    }

    public func uncheckedSumOfAbs(_ x: Buffer, count: Int) throws -> Double {
        blockingCounter.increment()
        let x = pointer(x)
        var sum = 0.0
        for i in 0 ..< count { sum += Double(abs(x[i])) }
        return sum
    }
}
