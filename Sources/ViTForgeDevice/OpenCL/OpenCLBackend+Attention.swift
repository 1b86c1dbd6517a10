import COpenCL
import ViTForgeSupport

/// The fused attention on OpenCL (`Kernels/attention.cl`): the GPU shape stages tiles of q·kᵀ (16×16 in the standard
/// `OpenCLAttentionTiles`) in local memory with an online softmax; the CPU-device shape gives each query row one
/// work-item. Heads wider than the tiles' width (128 floats) take the row kernels on any device.
extension OpenCLBackend {

    public func uncheckedAttentionForward(qkv: Buffer, layout: QKVLayout, batch: Int, tokens: Int, scale: Float,
                                          out: Buffer, logSumExp: Buffer) throws {
        guard let call = try attentionCall(layout: layout, batch: batch, tokens: tokens, scale: scale, qkv: qkv)
        else { return }
        let outMemory = clMemory(out)
        let lseMemory = clMemory(logSumExp)
        let arguments = call.shared + [.buffer(outMemory), .buffer(lseMemory)]
        if call.tiled {
            try launchGroups(.attentionForwardTiled, groups: call.tiles, rows: call.items, arguments)
        } else {
            try launch(.attentionForwardRows, columns: tokens, rows: call.items, arguments)
        }
    }

    public func uncheckedAttentionBackward(qkv: Buffer, out: Buffer, logSumExp: Buffer, dOut: Buffer, dQKV: Buffer,
                                           layout: QKVLayout, batch: Int, tokens: Int, scale: Float) throws {
        guard let call = try attentionCall(layout: layout, batch: batch, tokens: tokens, scale: scale, qkv: qkv)
        else { return }
        let outMemory = clMemory(out)
        let lseMemory = clMemory(logSumExp)
        let dOutMemory = clMemory(dOut)
        let dQKVMemory = clMemory(dQKV)
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

    /// The arguments both directions share; nil when there is nothing to compute.
    private func attentionCall(layout: QKVLayout, batch: Int, tokens: Int, scale: Float,
                               qkv: Buffer) throws
        -> (rows: Int, items: Int, tiles: Int, tiled: Bool, shared: [KernelArgument])?
    {
        let rows = batch * tokens
        let qkvMemory = clMemory(qkv)
        let items = layout.heads * batch
        guard items > 0, tokens > 0 else { return nil }
        let widest = max(layout.qkDims.max() ?? 0, layout.vDims.max() ?? 0)
        var tiled = kernelShape == .gpu && widest <= attentionTiles.maxWidth
        for kernel in [KernelName.attentionForwardTiled, .attentionBackwardDQTiled, .attentionBackwardDKVTiled]
        where tiled {
            // The tiles assume exactly rows × lanes work-items; a device that cannot run that many gets the row
            // kernels.
            tiled = try launchLocalSize(kernel) == attentionTiles.groupSize
        }
        let shared: [KernelArgument] = [
            .buffer(qkvMemory), .buffer(try headTable(layout)), try .int(layout.totalQK),
            try .int(layout.qkvFeatures), try .int(layout.totalV), try .int(batch), try .int(tokens), .float(scale),
        ]
        let tiles = (tokens + attentionTiles.rows - 1) / attentionTiles.rows
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
