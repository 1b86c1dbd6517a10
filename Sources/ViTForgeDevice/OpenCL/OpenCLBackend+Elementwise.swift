import COpenCL

/// Elementwise and per-row operations whose rows are independent: bias, residual, scaling, GELU, gather/scatter.
extension OpenCLBackend {
    // MARK: Elementwise and row operations

    public func addBias(_ x: Buffer, bias: Buffer, rows: Int, cols: Int) throws {
        let count = try size(rows, cols, "addBias")
        try launch(.addBias, columns: cols, rows: rows, [
            .buffer(try checked(x, "addBias", "x", count: count)),
            .buffer(try checked(bias, "addBias", "bias", count: cols)), try .int(rows), try .int(cols),
        ])
    }

    public func addBiasBackward(dOut: Buffer, dBias: Buffer, rows: Int, cols: Int) throws {
        let op = "addBiasBackward"
        let count = try size(rows, cols, op)
        let dOutMemory = try checked(dOut, op, "dOut", count: count)
        let dBiasMemory = try checked(dBias, op, "dBias", count: cols)
        let tiles = columnTiles(rows)
        try withColumnPartials(floats: tiles * cols, rows: rows, cols: cols) { partials in
            try launch(.columnSumPartials, columns: cols, rows: tiles, [
                .buffer(dOutMemory), try .int(rows), try .int(cols), try .int(Self.columnTileRows), .buffer(partials),
            ])
            try combineColumnPartials(partials, first: 0, tiles: tiles, cols: cols, keep: nil, into: dBiasMemory)
        }
    }

    public func add(_ a: Buffer, _ b: Buffer, out: Buffer, count: Int) throws {
        try launch(.add, global: count, [
            .buffer(try checked(a, "add", "a", count: count)), .buffer(try checked(b, "add", "b", count: count)),
            .buffer(try checked(out, "add", "out", count: count)), try .int(count),
        ])
    }

    public func axpy(alpha: Float, x: Buffer, y: Buffer, count: Int) throws {
        try launch(.axpy, global: count, [
            .float(alpha), .buffer(try checked(x, "axpy", "x", count: count)),
            .buffer(try checked(y, "axpy", "y", count: count)), try .int(count),
        ])
    }

    public func scale(_ x: Buffer, by alpha: Float, count: Int) throws {
        try launch(.scale, global: count, [
            .buffer(try checked(x, "scale", "x", count: count)), .float(alpha), try .int(count),
        ])
    }

    public func biasGeluForward(x: Buffer, bias: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let op = "biasGeluForward"
        let count = try size(rows, cols, op)
        try launch(.biasGeluForward, columns: cols, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(bias, op, "bias", count: cols)),
            .buffer(try checked(out, op, "out", count: count)), try .int(rows), try .int(cols),
        ])
    }

    public func biasGeluBackward(dOut: Buffer, x: Buffer, bias: Buffer, dX: Buffer, rows: Int, cols: Int) throws {
        let op = "biasGeluBackward"
        let count = try size(rows, cols, op)
        try launch(.biasGeluBackward, columns: cols, rows: rows, [
            .buffer(try checked(dOut, op, "dOut", count: count)), .buffer(try checked(x, op, "x", count: count)),
            .buffer(try checked(bias, op, "bias", count: cols)), .buffer(try checked(dX, op, "dX", count: count)),
            try .int(rows), try .int(cols),
        ])
    }

    // MARK: Gather / scatter

    public func gather(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        let op = "gather"
        try launch(.gather, global: count, [
            .buffer(try checked(src, op, "src", count: 0)), try .int(src.count, "src.count"),
            .buffer(try checked(indices, op, "indices", count: count)),
            .buffer(try checked(dst, op, "dst", count: count)), try .int(count),
        ])
    }

    public func scatterAdd(src: Buffer, indices: Buffer, dst: Buffer, count: Int) throws {
        let op = "scatterAdd"
        try launch(.scatterAdd, global: count, [
            .buffer(try checked(src, op, "src", count: count)),
            .buffer(try checked(indices, op, "indices", count: count)),
            .buffer(try checked(dst, op, "dst", count: 0)), try .int(dst.count, "dst.count"), try .int(count),
        ])
    }
}
