import COpenCL
import ViTForgeSupport

/// The fused attention on OpenCL (`Kernels/attention.cl`): the GPU shape stages 16×16 tiles of q·kᵀ in local memory
/// with an online softmax; the CPU-device shape gives each query row one work-item. Heads wider than the tiles'
/// 128 floats take the row kernels on any device.
extension OpenCLBackend {
    /// The widest head (q/k or v) the tiled kernels hold in local memory (ATT_MAXD in attention.cl).
    static let attentionTileMaxWidth = 128
    /// Query (or key) rows per work-group of the tiled kernels (ATT_ROWS), and their fixed work-group size.
    static let attentionTileRows = 16
    static let attentionTileGroupSize = 64

    public func attentionForward(qkv: Buffer, layout: QKVLayout, batch: Int, tokens: Int, scale: Float, out: Buffer,
                                 logSumExp: Buffer) throws {
        let op = "attentionForward"
        guard let call = try attentionCall(op, layout: layout, batch: batch, tokens: tokens, scale: scale, qkv: qkv)
        else { return }
        let outMemory = try checked(out, op, "out", count: call.rows * layout.totalV)
        let lseMemory = try checked(logSumExp, op, "logSumExp", count: call.items * tokens)
        let arguments = call.shared + [.buffer(outMemory), .buffer(lseMemory)]
        if call.tiled {
            try launchGroups(.attentionForwardTiled, groups: call.tiles, rows: call.items, arguments)
        } else {
            try launch(.attentionForwardRows, columns: tokens, rows: call.items, arguments)
        }
    }

    public func attentionBackward(qkv: Buffer, out: Buffer, logSumExp: Buffer, dOut: Buffer, dQKV: Buffer,
                                  layout: QKVLayout, batch: Int, tokens: Int, scale: Float) throws {
        let op = "attentionBackward"
        guard let call = try attentionCall(op, layout: layout, batch: batch, tokens: tokens, scale: scale, qkv: qkv)
        else { return }
        let outMemory = try checked(out, op, "out", count: call.rows * layout.totalV)
        let lseMemory = try checked(logSumExp, op, "logSumExp", count: call.items * tokens)
        let dOutMemory = try checked(dOut, op, "dOut", count: call.rows * layout.totalV)
        let dQKVMemory = try checked(dQKV, op, "dQKV", count: call.rows * layout.qkvFeatures)
        // D is written by the dQ kernel and read by the dK/dV kernel; the lock keeps another thread's backward from
        // using the same scratch in between (they are enqueued back to back on the in-order queue).
        try attentionLock.withLock {
            let delta = try scratchBuffer(&attentionDelta, floats: call.items * tokens)
            let dq = call.shared + [.buffer(outMemory), .buffer(lseMemory), .buffer(dOutMemory), .buffer(delta),
                                    .buffer(dQKVMemory)]
            let dkv = call.shared + [.buffer(lseMemory), .buffer(dOutMemory), .buffer(delta), .buffer(dQKVMemory)]
            if call.tiled {
                try launchGroups(.attentionBackwardDQTiled, groups: call.tiles, rows: call.items, dq)
                try launchGroups(.attentionBackwardDKVTiled, groups: call.tiles, rows: call.items, dkv)
            } else {
                try launch(.attentionBackwardDQRows, columns: tokens, rows: call.items, dq)
                try launch(.attentionBackwardDKVRows, columns: tokens, rows: call.items, dkv)
            }
        }
    }

    /// The checks and arguments both directions share; nil when there is nothing to compute.
    private func attentionCall(_ op: String, layout: QKVLayout, batch: Int, tokens: Int, scale: Float,
                               qkv: Buffer) throws
        -> (rows: Int, items: Int, tiles: Int, tiled: Bool, shared: [KernelArgument])?
    {
        let rows = try size(batch, tokens, op)
        for head in 0 ..< layout.heads where layout.qkDims[head] < 0 || layout.vDims[head] < 0 {
            throw BackendError.invalidArgument("\(op): head \(head) has a negative width")
        }
        let qkvMemory = try checked(qkv, op, "qkv", count: rows * layout.qkvFeatures)
        let items = layout.heads * batch
        guard items > 0, tokens > 0 else { return nil }
        let widest = max(layout.qkDims.max() ?? 0, layout.vDims.max() ?? 0)
        var tiled = kernelShape == .gpu && widest <= Self.attentionTileMaxWidth
        for kernel in [KernelName.attentionForwardTiled, .attentionBackwardDQTiled, .attentionBackwardDKVTiled]
        where tiled {
            // The tiles assume exactly 64 work-items; a device that cannot run that many gets the row kernels.
            tiled = try launchLocalSize(kernel) == Self.attentionTileGroupSize
        }
        let shared: [KernelArgument] = [
            .buffer(qkvMemory), .buffer(try headTable(layout)), try .int(layout.totalQK),
            try .int(layout.qkvFeatures), try .int(layout.totalV), try .int(batch), try .int(tokens), .float(scale),
        ]
        let tiles = (tokens + Self.attentionTileRows - 1) / Self.attentionTileRows
        return (rows, items, tiles, tiled, shared)
    }

    /// (q/k width, v width, q/k offset, v offset) per head as `int4`s, uploaded once per layout. Not called with
    /// `attentionLock` held (it takes it).
    private func headTable(_ layout: QKVLayout) throws -> cl_mem {
        try attentionLock.withLock {
            if let known = attentionHeadTables[layout] { return known.memory }
            var entries: [Int32] = []
            for head in 0 ..< layout.heads {
                for value in [layout.qkDims[head], layout.vDims[head], layout.qkOffsets[head], layout.vOffsets[head]] {
                    guard let narrow = Int32(exactly: value) else {
                        throw BackendError.invalidArgument("attention: head width or offset \(value) exceeds 32 bits")
                    }
                    entries.append(narrow)
                }
            }
            guard let table = try makeBuffer(entries) as? OpenCLBuffer else {
                preconditionFailure("allocate returned a buffer of another backend")
            }
            // A pruning run meets a new layout at every cut; the tables are tiny, but not kept forever.
            if attentionHeadTables.count >= 64 { attentionHeadTables.removeAll() }
            attentionHeadTables[layout] = table
            return table.memory
        }
    }
}
