// Channel masks: scaling columns in the forward, the masked-gradient path (one float64 sum per mask entry), and
// LayerNorm over the kept channels of a residual-width mask.

extension CPUBackend {
    public func scaleColumns(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        try requireSizes("scaleColumns", ["rows": rows, "cols": cols])
        let x = try range(x, count: rows * cols, "scaleColumns", "x")
        let mask = try range(mask, count: cols, "scaleColumns", "mask")
        let out = try range(out, count: rows * cols, "scaleColumns", "out")
        parallelChunks(rows, costPerItem: cols) { rowRange in
            for r in rowRange {
                let source = x + r * cols, target = out + r * cols
                for c in 0 ..< cols { target[c] = source[c] * mask[c] }
            }
        }
    }

    public func scaleRows(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        try requireSizes("scaleRows", ["rows": rows, "cols": cols])
        let x = try range(x, count: rows * cols, "scaleRows", "x")
        let mask = try range(mask, count: rows, "scaleRows", "mask")
        let out = try range(out, count: rows * cols, "scaleRows", "out")
        parallelChunks(rows, costPerItem: cols) { rowRange in
            for r in rowRange {
                let source = x + r * cols, target = out + r * cols, value = mask[r]
                for c in 0 ..< cols { target[c] = source[c] * value }
            }
        }
    }

    public func maskGradientRows(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        try requireSizes("maskGradientRows", ["rows": rows, "cols": cols])
        let x = try range(x, count: rows * cols, "maskGradientRows", "x")
        let dY = try range(dY, count: rows * cols, "maskGradientRows", "dY")
        let dMask = try range(dMask, count: rows, "maskGradientRows", "dMask")
        parallelChunks(rows, costPerItem: cols) { rowRange in
            for r in rowRange {
                let xRow = x + r * cols, dRow = dY + r * cols
                var sum = 0.0
                for c in 0 ..< cols { sum += Double(xRow[c] * dRow[c]) }
                dMask[r] += Float(sum)
            }
        }
    }

    public func maskGradient(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        try requireSizes("maskGradient", ["rows": rows, "cols": cols])
        let x = try range(x, count: rows * cols, "maskGradient", "x")
        let dY = try range(dY, count: rows * cols, "maskGradient", "dY")
        let dMask = try range(dMask, count: cols, "maskGradient", "dMask")
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
    public func maskedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, keep: Buffer, out: Buffer,
                                       mean: Buffer, rstd: Buffer, rows: Int, cols: Int, eps: Float) throws {
        let op = "maskedLayerNormForward"
        try requireSizes(op, ["rows": rows, "cols": cols])
        let x = try range(x, count: rows * cols, op, "x"), out = try range(out, count: rows * cols, op, "out")
        let gamma = try range(gamma, count: cols, op, "gamma"), beta = try range(beta, count: cols, op, "beta")
        let keep = try range(keep, count: cols, op, "keep")
        let mean = try range(mean, count: rows, op, "mean"), rstd = try range(rstd, count: rows, op, "rstd")
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

    public func maskedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, keep: Buffer, mean: Buffer,
                                        rstd: Buffer, dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int,
                                        cols: Int) throws {
        let op = "maskedLayerNormBackward"
        try requireSizes(op, ["rows": rows, "cols": cols])
        let dOut = try range(dOut, count: rows * cols, op, "dOut"), x = try range(x, count: rows * cols, op, "x")
        let dX = try range(dX, count: rows * cols, op, "dX")
        let gamma = try range(gamma, count: cols, op, "gamma"), keep = try range(keep, count: cols, op, "keep")
        let mean = try range(mean, count: rows, op, "mean"), rstd = try range(rstd, count: rows, op, "rstd")
        let dGamma = try range(dGamma, count: cols, op, "dGamma"), dBeta = try range(dBeta, count: cols, op, "dBeta")
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
    public func segmentSum(_ src: Buffer, offsets: Buffer, members: Buffer, dst: Buffer, segments: Int) throws {
        let op = "segmentSum"
        try requireSizes(op, ["segments": segments])
        let source = try range(src, count: src.count, op, "src")
        let starts = try range(offsets, count: segments + 1, op, "offsets")
        let indices = try range(members, count: members.count, op, "members")
        let target = try range(dst, count: segments, op, "dst")
        func int(_ value: Float) -> Int { Int(Int32(bitPattern: value.bitPattern)) }
        for s in 0 ..< segments {
            let (first, end) = (int(starts[s]), int(starts[s + 1]))
            guard first >= 0, first <= end, end <= members.count else {
                throw BackendError.invalidArgument("\(op): segment \(s) spans \(first) ..< \(end) of \(members.count)")
            }
            var sum = 0.0
            for k in first ..< end {
                let member = int(indices[k])
                guard member >= 0, member < src.count else {
                    throw BackendError.invalidArgument("\(op): member \(member) outside src (\(src.count))")
                }
                sum += Double(source[member])
            }
            target[s] += Float(sum)
        }
    }

    public func addScaledSign(_ x: Buffer, alpha: Float, y: Buffer, count: Int) throws {
        try requireSizes("addScaledSign", ["count": count])
        let x = try range(x, count: count, "addScaledSign", "x"), y = try range(y, count: count, "addScaledSign", "y")
        for i in 0 ..< count { y[i] += x[i] > 0 ? alpha : x[i] < 0 ? -alpha : 0 }
    }

    public func sumOfAbs(_ x: Buffer, count: Int) throws -> Double {
        blockingCounter.increment()
        try requireSizes("sumOfAbs", ["count": count])
        let x = try range(x, count: count, "sumOfAbs", "x")
        var sum = 0.0
        for i in 0 ..< count { sum += Double(abs(x[i])) }
        return sum
    }
}
