import COpenCL

/// Channel masks: masked LayerNorm, scaling by a mask, mask gradients, segment sums, the ℓ1 subgradient.
extension OpenCLBackend {
    public func maskedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, keep: Buffer, out: Buffer,
                                       mean: Buffer, rstd: Buffer, rows: Int, cols: Int, eps: Float) throws {
        let op = "maskedLayerNormForward"
        let count = try size(rows, cols, op)
        try launchRows(.maskedLayerNormForward, .maskedLayerNormForwardWG, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(gamma, op, "gamma", count: cols)),
            .buffer(try checked(beta, op, "beta", count: cols)), .buffer(try checked(keep, op, "keep", count: cols)),
            .buffer(try checked(out, op, "out", count: count)), .buffer(try checked(mean, op, "mean", count: rows)),
            .buffer(try checked(rstd, op, "rstd", count: rows)), try .int(rows), try .int(cols), .float(eps),
        ])
    }

    public func maskedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, keep: Buffer, mean: Buffer,
                                        rstd: Buffer, dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int,
                                        cols: Int) throws {
        let op = "maskedLayerNormBackward"
        let count = try size(rows, cols, op)
        let dOutMemory = try checked(dOut, op, "dOut", count: count), xMemory = try checked(x, op, "x", count: count)
        let keepMemory = try checked(keep, op, "keep", count: cols)
        let meanMemory = try checked(mean, op, "mean", count: rows)
        let rstdMemory = try checked(rstd, op, "rstd", count: rows)
        try launchRows(.maskedLayerNormBackwardInput, .maskedLayerNormBackwardInputWG, rows: rows, [
            .buffer(dOutMemory), .buffer(xMemory), .buffer(try checked(gamma, op, "gamma", count: cols)),
            .buffer(keepMemory), .buffer(meanMemory), .buffer(rstdMemory),
            .buffer(try checked(dX, op, "dX", count: count)), try .int(rows), try .int(cols),
        ])
        try layerNormParamsBackward(dOut: dOutMemory, x: xMemory, keep: keepMemory, mean: meanMemory,
                                    rstd: rstdMemory, dGamma: try checked(dGamma, op, "dGamma", count: cols),
                                    dBeta: try checked(dBeta, op, "dBeta", count: cols), rows: rows, cols: cols)
    }

    // MARK: Channel masks

    public func scaleColumns(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let op = "scaleColumns"
        let count = try size(rows, cols, op)
        try launch(.scaleColumns, columns: cols, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(mask, op, "mask", count: cols)),
            .buffer(try checked(out, op, "out", count: count)), try .int(rows), try .int(cols),
        ])
    }

    public func scaleRows(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        let op = "scaleRows"
        let count = try size(rows, cols, op)
        try launch(.scaleRows, columns: cols, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(mask, op, "mask", count: rows)),
            .buffer(try checked(out, op, "out", count: count)), try .int(rows), try .int(cols),
        ])
    }

    public func segmentSum(_ src: Buffer, offsets: Buffer, members: Buffer, dst: Buffer, segments: Int) throws {
        let op = "segmentSum"
        try launch(.segmentSum, global: segments, [
            .buffer(try checked(src, op, "src", count: 0)), try .int(src.count, "src.count"),
            .buffer(try checked(offsets, op, "offsets", count: segments + 1)),
            .buffer(try checked(members, op, "members", count: 0)), try .int(members.count, "members.count"),
            .buffer(try checked(dst, op, "dst", count: segments)), try .int(segments),
        ])
    }

    public func addScaledSign(_ x: Buffer, alpha: Float, y: Buffer, count: Int) throws {
        let op = "addScaledSign"
        try launch(.addScaledSign, global: count, [
            .buffer(try checked(x, op, "x", count: count)), .float(alpha),
            .buffer(try checked(y, op, "y", count: count)), try .int(count),
        ])
    }

    public func maskGradientRows(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let op = "maskGradientRows"
        let count = try size(rows, cols, op)
        try launch(.maskGradientRows, global: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(dY, op, "dY", count: count)),
            try .int(rows), try .int(cols), .buffer(try checked(dMask, op, "dMask", count: rows)),
        ])
    }

    public func maskGradient(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let op = "maskGradient"
        let count = try size(rows, cols, op)
        let xMemory = try checked(x, op, "x", count: count), dYMemory = try checked(dY, op, "dY", count: count)
        let dMaskMemory = try checked(dMask, op, "dMask", count: cols)
        let tiles = columnTiles(rows)
        try withColumnPartials(floats: tiles * cols, rows: rows, cols: cols) { partials in
            try launch(.maskGradientPartials, columns: cols, rows: tiles, [
                .buffer(xMemory), .buffer(dYMemory), try .int(rows), try .int(cols), try .int(Self.columnTileRows),
                .buffer(partials),
            ])
            try combineColumnPartials(partials, first: 0, tiles: tiles, cols: cols, keep: nil, into: dMaskMemory)
        }
    }
}
