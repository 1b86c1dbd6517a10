import COpenCL

/// Channel masks: masked LayerNorm, scaling by a mask, mask gradients, segment sums, the ℓ1 subgradient.
extension OpenCLBackend {
    public func uncheckedMaskedLayerNormForward(x: Buffer, gamma: Buffer, beta: Buffer, keep: Buffer, out: Buffer,
                                                mean: Buffer, rstd: Buffer, rows: Int, cols: Int, eps: Float) throws {
        try launchRows(.maskedLayerNormForward, .maskedLayerNormForwardWG, rows: rows, [
            .buffer(clMemory(x)), .buffer(clMemory(gamma)),
            .buffer(clMemory(beta)), .buffer(clMemory(keep)),
            .buffer(clMemory(out)), .buffer(clMemory(mean)),
            .buffer(clMemory(rstd)), try .int(rows), try .int(cols), .float(eps),
        ])
    }

    public func uncheckedMaskedLayerNormBackward(dOut: Buffer, x: Buffer, gamma: Buffer, keep: Buffer, mean: Buffer,
                                                 rstd: Buffer, dX: Buffer, dGamma: Buffer, dBeta: Buffer, rows: Int,
                                                 cols: Int) throws {
        let dOutMemory = clMemory(dOut), xMemory = clMemory(x)
        let keepMemory = clMemory(keep)
        let meanMemory = clMemory(mean)
        let rstdMemory = clMemory(rstd)
        try launchRows(.maskedLayerNormBackwardInput, .maskedLayerNormBackwardInputWG, rows: rows, [
            .buffer(dOutMemory), .buffer(xMemory), .buffer(clMemory(gamma)),
            .buffer(keepMemory), .buffer(meanMemory), .buffer(rstdMemory),
            .buffer(clMemory(dX)), try .int(rows), try .int(cols),
        ])
        try layerNormParamsBackward(dOut: dOutMemory, x: xMemory, keep: keepMemory, mean: meanMemory,
                                    rstd: rstdMemory, dGamma: clMemory(dGamma),
                                    dBeta: clMemory(dBeta), rows: rows, cols: cols)
    }

    // MARK: Channel masks

    public func uncheckedScaleColumns(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        try launch(.scaleColumns, columns: cols, rows: rows, [
            .buffer(clMemory(x)), .buffer(clMemory(mask)),
            .buffer(clMemory(out)), try .int(rows), try .int(cols),
        ])
    }

    public func uncheckedScaleRows(_ x: Buffer, mask: Buffer, out: Buffer, rows: Int, cols: Int) throws {
        try launch(.scaleRows, columns: cols, rows: rows, [
            .buffer(clMemory(x)), .buffer(clMemory(mask)),
            .buffer(clMemory(out)), try .int(rows), try .int(cols),
        ])
    }

    public func uncheckedSegmentSum(_ src: Buffer, offsets: Buffer, members: Buffer, dst: Buffer,
                                    segments: Int) throws {
        try launch(.segmentSum, global: segments, [
            .buffer(clMemory(src)), try .int(src.count, "src.count"),
            .buffer(clMemory(offsets)),
            .buffer(clMemory(members)), try .int(members.count, "members.count"),
            .buffer(clMemory(dst)), try .int(segments),
        ])
    }

    public func uncheckedAddScaledSign(_ x: Buffer, alpha: Float, y: Buffer, count: Int) throws {
        try launch(.addScaledSign, global: count, [
            .buffer(clMemory(x)), .float(alpha),
            .buffer(clMemory(y)), try .int(count),
        ])
    }

    public func uncheckedMaskGradientRows(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        try launch(.maskGradientRows, global: rows, [
            .buffer(clMemory(x)), .buffer(clMemory(dY)),
            try .int(rows), try .int(cols), .buffer(clMemory(dMask)),
        ])
    }

    public func uncheckedMaskGradient(x: Buffer, dY: Buffer, dMask: Buffer, rows: Int, cols: Int) throws {
        let xMemory = clMemory(x), dYMemory = clMemory(dY)
        let dMaskMemory = clMemory(dMask)
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
