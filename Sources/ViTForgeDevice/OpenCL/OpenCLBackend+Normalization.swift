import COpenCL

/// LayerNorm and softmax: row kernels in two shapes (`launchRows`), γ/β gradients as two-stage column reductions.
extension OpenCLBackend {
    public func uncheckedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer,
                                          rstd: Buffer, rows: Int, cols: Int, eps: Float) throws {
        try launchRows(.layerNormForward, .layerNormForwardWG, rows: rows, [
            .buffer(clMemory(x)), .buffer(clMemory(gamma)),
            .buffer(clMemory(beta)), .buffer(clMemory(out)),
            .buffer(clMemory(mean)), .buffer(clMemory(rstd)),
            try .int(rows), try .int(cols), .float(eps),
        ])
    }

    public func uncheckedResidualLayerNormForward(residual: Buffer, branch: Buffer, bias: Buffer, sum: Buffer,
                                                  gamma: Buffer, beta: Buffer, out: Buffer, mean: Buffer,
                                                  rstd: Buffer, rows: Int, cols: Int, eps: Float) throws {
        try launchRows(.residualLayerNormForward, .residualLayerNormForwardWG, rows: rows, [
            .buffer(clMemory(residual)), .buffer(clMemory(branch)), .buffer(clMemory(bias)),
            .buffer(clMemory(sum)), .buffer(clMemory(gamma)), .buffer(clMemory(beta)),
            .buffer(clMemory(out)), .buffer(clMemory(mean)), .buffer(clMemory(rstd)),
            try .int(rows), try .int(cols), .float(eps),
        ])
    }

    public func uncheckedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, mean: Buffer, rstd: Buffer,
                                           dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int, cols: Int) throws {
        let dOutMemory = clMemory(dOut), xMemory = clMemory(x)
        let meanMemory = clMemory(mean)
        let rstdMemory = clMemory(rstd)
        try launchRows(.layerNormBackwardInput, .layerNormBackwardInputWG, rows: rows, [
            .buffer(dOutMemory), .buffer(xMemory), .buffer(clMemory(gamma)),
            .buffer(meanMemory), .buffer(rstdMemory), .buffer(clMemory(dX)),
            try .int(rows), try .int(cols),
        ])
        try layerNormParamsBackward(dOut: dOutMemory, x: xMemory, keep: nil, mean: meanMemory, rstd: rstdMemory,
                                    dGamma: clMemory(dGamma),
                                    dBeta: clMemory(dBeta), rows: rows, cols: cols)
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

    public func uncheckedSoftmaxForward(x: Buffer, out: Buffer, rows: Int, cols: Int, scale: Float) throws {
        try launchRows(.softmaxForward, .softmaxForwardWG, rows: rows, [
            .buffer(clMemory(x)), .buffer(clMemory(out)),
            try .int(rows), try .int(cols), .float(scale),
        ])
    }

    public func uncheckedSoftmaxBackward(dOut: Buffer, out: Buffer, dX: Buffer, rows: Int, cols: Int,
                                         scale: Float) throws {
        try launchRows(.softmaxBackward, .softmaxBackwardWG, rows: rows, [
            .buffer(clMemory(dOut)), .buffer(clMemory(out)),
            .buffer(clMemory(dX)), try .int(rows), try .int(cols), .float(scale),
        ])
    }
}
