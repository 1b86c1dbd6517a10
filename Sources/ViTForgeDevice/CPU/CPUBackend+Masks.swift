// Channel masks: scaling columns in the forward, and the masked-gradient path (one float64 sum per mask entry).

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
