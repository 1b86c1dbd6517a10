import COpenCL

/// Launching kernels: arguments (set only when they changed), 1-D/2-D ranges, work-group-per-row launches,
/// local sizes, and the scratch buffers of two-stage column reductions.
extension OpenCLBackend {
    // MARK: Launching kernels

    enum KernelArgument: Equatable {
        case buffer(cl_mem)
        case int32(Int32)
        case long(Int64)
        case float(Float)
        case double(Double)

        /// A size or offset for an `int` kernel parameter; the kernels index with 32-bit sizes.
        static func int(_ value: Int, _ label: String = "size") throws -> KernelArgument {
            guard let narrow = Int32(exactly: value) else {
                throw BackendError.invalidArgument(
                    "\(label) = \(value) does not fit the OpenCL kernels' 32-bit indices")
            }
            return .int32(narrow)
        }

        /// Equal when the kernel would receive the same bytes (floats by bit pattern: −0 is not +0, NaN is NaN).
        static func == (left: KernelArgument, right: KernelArgument) -> Bool {
            switch (left, right) {
            case let (.buffer(a), .buffer(b)): return a == b
            case let (.int32(a), .int32(b)): return a == b
            case let (.long(a), .long(b)): return a == b
            case let (.float(a), .float(b)): return a.bitPattern == b.bitPattern
            case let (.double(a), .double(b)): return a.bitPattern == b.bitPattern
            default: return false
            }
        }
    }

    /// Enqueues `kernel` over `global` work-items (rounded up to the local size; the kernels check bounds).
    func launch(_ name: KernelName, global: Int, _ arguments: [KernelArgument]) throws {
        try launch(name, columns: global, rows: 1, arguments)
    }

    /// Enqueues `kernel` over a 2-D range: dimension 0 = `columns` (rounded up to the local size), dimension 1 =
    /// `rows`, with work-groups of (local size × 1).
    func launch(_ name: KernelName, columns: Int, rows: Int, _ arguments: [KernelArgument]) throws {
        guard let kernel = kernels[name] else {
            throw BackendError.unsupported("\(name.rawValue) is not available on \(device.name)")
        }
        guard columns > 0, rows > 0 else { return }
        _ = try KernelArgument.int(columns, "work size")
        _ = try KernelArgument.int(rows, "work size")
        try launchLock.withLock { try launchLocked(name, kernel, columns: columns, rows: rows, arguments) }
    }

    /// A row operation (LayerNorm, softmax, the losses): one work-item per row (`perItem`, on CPU devices) or one
    /// work-group per row (`perGroup`, the GPU shape). Both kernels take the same arguments; the work-groups are
    /// laid out along dimension 0, because some GPUs cap dimension 1 at 65,535 groups and attention's softmax has
    /// heads × images × tokens rows.
    func launchRows(_ perItem: KernelName, _ perGroup: KernelName, rows: Int,
                            _ arguments: [KernelArgument]) throws {
        switch kernelShape {
        case .cpuDevice: try launch(perItem, global: rows, arguments)
        case .gpu: try launchGroups(perGroup, groups: rows, arguments)
        }
    }

    /// Row tiles of a two-stage column reduction over `rows` rows.
    func columnTiles(_ rows: Int) -> Int {
        (rows + Self.columnTileRows - 1) / Self.columnTileRows
    }

    /// Runs both stages of a column reduction with the shared partials scratch (at least `floats` elements, grown
    /// as needed). Under `columnPartialsLock`, so that stage 1 of another thread's reduction cannot be enqueued
    /// between this one's stages (the queue is in order, so that is all it takes). Nothing to do for an empty shape.
    func withColumnPartials(floats: Int, rows: Int, cols: Int, _ stages: (cl_mem) throws -> Void) throws {
        if rows == 0 || cols == 0 { return }
        try columnPartialsLock.withLock { try stages(try scratchBuffer(&columnPartials, floats: floats)) }
    }

    /// The memory of `scratch`, replaced by a new buffer first when it holds fewer than `floats` elements (the old
    /// one is freed once the kernels already enqueued on it are done). Called under the lock that guards `scratch`.
    func scratchBuffer(_ scratch: inout OpenCLBuffer?, floats: Int) throws -> cl_mem {
        if let existing = scratch, existing.count >= floats { return existing.memory }
        scratch = nil
        guard let created = try allocate(floats) as? OpenCLBuffer else {
            preconditionFailure("allocate returned a buffer of another backend")
        }
        scratch = created
        return created.memory
    }

    /// Stage 2 of a float column reduction: `out[c] += Σ_t partials[first + t·cols + c]`, skipping the columns
    /// whose `keep` is 0 when a keep mask is given.
    func combineColumnPartials(_ partials: cl_mem, first: Int, tiles: Int, cols: Int, keep: cl_mem?,
                                       into out: cl_mem) throws {
        try launch(.columnPartialsCombine, global: cols, [
            // Without a keep mask the kernel never reads that argument, but OpenCL 1.2 wants a valid buffer there.
            .buffer(partials), try .int(first), try .int(tiles), try .int(cols), .buffer(keep ?? partials),
            .int32(keep == nil ? 0 : 1), .buffer(out),
        ])
    }

    /// Enqueues exactly `groups × rows` work-groups of `kernel` (dimension 0: `groups` groups of the kernel's local
    /// size; dimension 1: `rows`), for GPU-shaped kernels that give each row (or tile) a whole work-group and read
    /// `get_group_id`/`get_local_size` themselves.
    func launchGroups(_ name: KernelName, groups: Int, rows: Int = 1, _ arguments: [KernelArgument]) throws {
        guard let kernel = kernels[name] else {
            throw BackendError.unsupported("\(name.rawValue) is not available on \(device.name)")
        }
        guard groups > 0, rows > 0 else { return }
        try launchLock.withLock {
            let local = try localSize(name, kernel)
            _ = try KernelArgument.int(groups * local, "work size")
            _ = try KernelArgument.int(rows, "work size")
            try launchLocked(name, kernel, columns: groups * local, rows: rows, arguments)
        }
    }

    func launchLocked(_ name: KernelName, _ kernel: cl_kernel, columns: Int, rows: Int,
                              _ arguments: [KernelArgument]) throws {
        let bound = boundArguments[name] ?? []
        for (index, argument) in arguments.enumerated() {
            if index < bound.count, bound[index] == argument { continue }
            kernelArgumentsSet += 1
            let status: cl_int
            switch argument {
            case var .buffer(memory):
                status = clSetKernelArg(kernel, cl_uint(index), MemoryLayout<cl_mem>.size, &memory)
            case var .int32(value):
                status = clSetKernelArg(kernel, cl_uint(index), 4, &value)
            case var .long(value):
                status = clSetKernelArg(kernel, cl_uint(index), 8, &value)
            case var .float(value):
                status = clSetKernelArg(kernel, cl_uint(index), 4, &value)
            case var .double(value):
                status = clSetKernelArg(kernel, cl_uint(index), 8, &value)
            }
            if status != CL_SUCCESS {
                // The kernel's arguments are now partly unknown: set them all at its next launch.
                Self.releaseBuffers(boundArguments.removeValue(forKey: name) ?? [])
                try checkCL(status, "clSetKernelArg(\(name.rawValue), \(index))")
            }
        }
        for case let .buffer(memory) in arguments { clRetainMemObject(memory) }
        Self.releaseBuffers(bound)
        boundArguments[name] = arguments
        let local = try localSize(name, kernel)
        var globalSize = [(columns + local - 1) / local * local, rows]
        var localSizeValue = [local, 1]
        guard let eventLog else {
            try checkCL(clEnqueueNDRangeKernel(queue, kernel, rows == 1 ? 1 : 2, nil, &globalSize, &localSizeValue, 0,
                                               nil, nil), "clEnqueueNDRangeKernel")
            return
        }
        var event: cl_event? = nil
        try checkCL(clEnqueueNDRangeKernel(queue, kernel, rows == 1 ? 1 : 2, nil, &globalSize, &localSizeValue, 0,
                                           nil, &event), "clEnqueueNDRangeKernel")
        eventLog.record(name.rawValue, event)
    }

    /// The local size launches of `name` use (nil when the kernel is not built on this device).
    func launchLocalSize(_ name: KernelName) throws -> Int? {
        guard let kernel = kernels[name] else { return nil }
        return try launchLock.withLock { try localSize(name, kernel) }
    }

    /// `localSize` (the tiled attention kernels: their tiles' work-group size, which their `reqd_work_group_size`
    /// demands), or less where the device or the compiled kernel cannot take that many work-items.
    /// Called under `launchLock` (it caches into `localSizes`).
    func localSize(_ name: KernelName, _ kernel: cl_kernel) throws -> Int {
        if let known = localSizes[name] { return known }
        var limit = 0
        try checkCL(clGetKernelWorkGroupInfo(kernel, shared.device, cl_kernel_work_group_info(CL_KERNEL_WORK_GROUP_SIZE),
                                             MemoryLayout<Int>.size, &limit, nil), "clGetKernelWorkGroupInfo")
        let wanted = name.isAttentionTiled ? attentionTiles.groupSize : Self.localSize
        let size = max(1, min(wanted, limit))
        localSizes[name] = size
        return size
    }
}
