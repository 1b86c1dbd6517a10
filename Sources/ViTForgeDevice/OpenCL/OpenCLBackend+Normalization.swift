import COpenCL

/// LayerNorm and softmax: row kernels in two shapes (`launchRows`), γ/β gradients as two-stage column reductions.
extension OpenCLBackend {
    public func layerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer, rstd: Buffer,
                                 rows: Int, cols: Int, eps: Float) throws {
        let op = "layerNormForward"
        let count = try size(rows, cols, op)
        try launchRows(.layerNormForward, .layerNormForwardWG, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(gamma, op, "gamma", count: cols)),
            .buffer(try checked(beta, op, "beta", count: cols)), .buffer(try checked(out, op, "out", count: count)),
            .buffer(try checked(mean, op, "mean", count: rows)), .buffer(try checked(rstd, op, "rstd", count: rows)),
            try .int(rows), try .int(cols), .float(eps),
        ])
    }

    public func layerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, mean: Buffer, rstd: Buffer,
                                  dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws {
        let op = "layerNormBackward"
        let count = try size(rows, cols, op)
        let dOutMemory = try checked(dOut, op, "dOut", count: count), xMemory = try checked(x, op, "x", count: count)
        let meanMemory = try checked(mean, op, "mean", count: rows)
        let rstdMemory = try checked(rstd, op, "rstd", count: rows)
        try launchRows(.layerNormBackwardInput, .layerNormBackwardInputWG, rows: rows, [
            .buffer(dOutMemory), .buffer(xMemory), .buffer(try checked(gamma, op, "gamma", count: cols)),
            .buffer(meanMemory), .buffer(rstdMemory), .buffer(try checked(dX, op, "dX", count: count)),
            try .int(rows), try .int(cols),
        ])
        try layerNormParamsBackward(dOut: dOutMemory, x: xMemory, keep: nil, mean: meanMemory, rstd: rstdMemory,
                                    dGamma: try checked(dGamma, op, "dGamma", count: cols),
                                    dBeta: try checked(dBeta, op, "dBeta", count: cols), rows: rows, cols: cols)
    }

    /// dGamma and dBeta (sums over rows) as a two-stage column reduction; `keep` leaves the masked LayerNorm's
    /// removed columns alone.
    func layerNormParamsBackward(dOut: cl_mem, x: cl_mem, keep: cl_mem?, mean: cl_mem, rstd: cl_mem,
                                         dGamma: cl_mem, dBeta: cl_mem, rows: Int, cols: Int) throws {
        let tiles = columnTiles(rows)
        try withColumnPartials(floats: 2 * tiles * cols, rows: rows, cols: cols) { partials in
            try launch(.layerNormParamsPartials, columns: cols, rows: tiles, [
                .buffer(dOut), .buffer(x), .buffer(mean), .buffer(rstd), try .int(rows), try .int(cols),
                try .int(Self.columnTileRows), .buffer(partials),
            ])
            try combineColumnPartials(partials, first: 0, tiles: tiles, cols: cols, keep: keep, into: dGamma)
            try combineColumnPartials(partials, first: tiles * cols, tiles: tiles, cols: cols, keep: keep,
                                      into: dBeta)
        }
    }

    public func softmaxForward(x: Buffer, out: Buffer, rows: Int, cols: Int, scale: Float) throws {
        let op = "softmaxForward"
        let count = try size(rows, cols, op)
        try launchRows(.softmaxForward, .softmaxForwardWG, rows: rows, [
            .buffer(try checked(x, op, "x", count: count)), .buffer(try checked(out, op, "out", count: count)),
            try .int(rows), try .int(cols), .float(scale),
        ])
    }

    public func softmaxBackward(dOut: Buffer, out: Buffer, dX: Buffer, rows: Int, cols: Int, scale: Float) throws {
        let op = "softmaxBackward"
        let count = try size(rows, cols, op)
        try launchRows(.softmaxBackward, .softmaxBackwardWG, rows: rows, [
            .buffer(try checked(dOut, op, "dOut", count: count)), .buffer(try checked(out, op, "out", count: count)),
            .buffer(try checked(dX, op, "dX", count: count)), try .int(rows), try .int(cols), .float(scale),
        ])
    }
}
