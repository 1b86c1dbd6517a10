import COpenCL

/// Elementwise and per-row operations whose rows are independent: bias, residual, scaling, GELU, gather/scatter.
extension OpenCLBackend {
    // MARK: Elementwise and row operations

    public func uncheckedAddBias(_ x: Buffer, bias: Buffer, rows: Int, cols: Int) throws {
        try launch(.addBias, columns: cols, rows: rows, [
            .buffer(clMemory(x)),
            .buffer(clMemory(bias)), try .int(rows), try .int(cols),
        ])
    }

    public func uncheckedAddBiasBackward(dOut: Buffer, dBias: Buffer, rows: Int, cols: Int) throws {
        let dOutMemory = clMemory(dOut)
        let dBiasMemory = clMemory(dBias)
        let tiles = columnTiles(rows)
        try withColumnPartials(floats: tiles * cols, rows: rows, cols: cols) { partials in
            try launch(.columnSumPartials, columns: cols, rows: tiles, [
                .buffer(dOutMemory), try .int(rows), try .int(cols), try .int(Self.columnTileRows), .buffer(partials),
            ])
            try combineColumnPartials(partials, first: 0, tiles: tiles, cols: cols, keep: nil, into: dBiasMemory)
        }
    }

    public func uncheckedAdd(_ a: Buffer, _ b: Buffer, out: Buffer, count: Int) throws {
        try launch(.add, global: count, [
            .buffer(clMemory(a)), .buffer(clMemory(b)),
            .buffer(clMemory(out)), try .int(count),
        ])
    }

    public func uncheckedAxpy(alpha: Float, x: Buffer, y: Buffer, count: Int) throws {
        try launch(.axpy, global: count, [
            .float(alpha), .buffer(clMemory(x)),
            .buffer(clMemory(y)), try .int(count),
        ])
    }

    public func uncheckedScale(_ x: Buffer, by alpha: Float, count: Int) throws {
        try launch(.scale, global: count, [
            .buffer(clMemory(x)), .float(alpha), try .int(count),
        ])
    }

    public func uncheckedBiasGeluForward(x: Buffer, bias: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        try launch(.biasGeluForward, columns: cols, rows: rows, [
            .buffer(clMemory(x)), .buffer(clMemory(bias)),
            .buffer(clMemory(out)), try .int(rows), try .int(cols),
        ])
    }

    public func uncheckedBiasGeluBackward(dOut: Buffer, x: Buffer, bias: Buffer, dX: Buffer, rows: Int,
                                          cols: Int) throws {
        try launch(.biasGeluBackward, columns: cols, rows: rows, [
            .buffer(clMemory(dOut)), .buffer(clMemory(x)),
            .buffer(clMemory(bias)), .buffer(clMemory(dX)),
            try .int(rows), try .int(cols),
        ])
    }

    // MARK: Gather / scatter

    public func uncheckedGather(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        try launch(.gather, global: count, [
            .buffer(clMemory(src)), try .int(src.count, "src.count"),
            .buffer(clMemory(indices)),
            .buffer(clMemory(dst)), try .int(count),
        ])
    }

    public func uncheckedScatterAdd(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        try launch(.scatterAdd, global: count, [
            .buffer(clMemory(src)),
            .buffer(clMemory(indices)),
            .buffer(clMemory(dst)), try .int(dst.count, "dst.count"), try .int(count),
        ])
    }
}
