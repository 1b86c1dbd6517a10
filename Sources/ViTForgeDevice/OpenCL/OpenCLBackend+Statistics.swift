import COpenCL

/// Float64 reductions: column statistics, and the sums returned to the host (`Kernels/statistics.cl`).
extension OpenCLBackend {
    // MARK: Statistics and reductions

    public func uncheckedColumnStatisticsAccumulate(x: Buffer, rows: Int, cols: Int, state: Buffer,
                                                    countBefore: Int) throws {
        try requireFloat64("columnStatisticsAccumulate")
        let xMemory = clMemory(x)
        let stateMemory = clMemory(state)
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

    public func uncheckedSum(_ x: Buffer, count: Int) throws -> Double {
        try reduce(x, count: count, mode: 0, operation: "sum")
    }

    public func uncheckedSumOfSquares(_ x: Buffer, count: Int) throws -> Double {
        try reduce(x, count: count, mode: 1, operation: "sumOfSquares")
    }

    public func uncheckedSumOfAbs(_ x: Buffer, count: Int) throws -> Double {
        try reduce(x, count: count, mode: 2, operation: "sumOfAbs")
    }

    /// mode: 0 Σx, 1 Σx², 2 Σ|x| (`sum_partials`).
    func reduce(_ x: Buffer, count: Int, mode: Int32, operation: String) throws -> Double {
        blockingCounter.increment()
        try requireFloat64(operation)
        let xMemory = clMemory(x)
        if count == 0 { return 0 }
        return try reductionLock.withLock { try reduceLocked(xMemory, count: count, mode: mode) }
    }

    func reduceLocked(_ xMemory: cl_mem, count: Int, mode: Int32) throws -> Double {
        let (partials, groups) = try launchSumPartials(xMemory, count: count, mode: mode)
        var values = [Double](repeating: 0, count: groups)
        try checkCL(clEnqueueReadBuffer(queue, partials, cl_bool(CL_TRUE), 0, groups * 8, &values, 0, nil, nil),
                    "clEnqueueReadBuffer")
        return values.reduce(0, +)
    }

    /// Enqueues the first stage of a float64 reduction: one partial sum per work-group into `reductionPartials`.
    /// Called under `reductionLock`; the in-order queue keeps the next user of the partials behind every reader.
    func launchSumPartials(_ xMemory: cl_mem, count: Int, mode: Int32) throws -> (cl_mem, groups: Int) {
        let groups = min(Self.reductionGroups, (count + Self.localSize - 1) / Self.localSize)
        // Two float elements per double.
        let partials = try scratchBuffer(&reductionPartials, floats: 2 * Self.reductionGroups)
        try launch(.sumPartials, global: groups * Self.localSize, [
            .buffer(xMemory), try .int(count), .int32(mode), .buffer(partials),
        ])
        return (partials, groups)
    }
}
