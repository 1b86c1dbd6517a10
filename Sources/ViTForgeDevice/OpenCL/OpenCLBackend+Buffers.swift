import COpenCL

/// Device memory of an `OpenCLBackend`: one `cl_mem`, released when the last reference goes.
public final class OpenCLBuffer: Buffer {
    let memory: cl_mem
    /// The context that owns `memory`; a buffer is only usable on backends of that context.
    let context: cl_context

    init(memory: cl_mem, context: cl_context, count: Int) {
        self.memory = memory
        self.context = context
        super.init(count: count)
    }

    deinit { clReleaseMemObject(memory) }
}

/// `OpenCLBuffer`, the transfers between host and device, and the checks that turn a `Buffer` into its `cl_mem`.
extension OpenCLBackend {
    // MARK: Buffers

    public func uncheckedAllocate(_ count: Int) throws -> Buffer {
        var status: cl_int = CL_SUCCESS
        // OpenCL has no empty buffers; a zero-element Buffer still owns a 4-byte cl_mem.
        guard let memory = clCreateBuffer(shared.context, cl_mem_flags(CL_MEM_READ_WRITE), max(count, 1) * 4, nil,
                                          &status), status == CL_SUCCESS
        else { throw BackendError.openCL(call: "clCreateBuffer", code: status) }
        return OpenCLBuffer(memory: memory, context: shared.context, count: count)
    }

    public func uncheckedUpload(_ values: UnsafeBufferPointer<Float>, to buffer: Buffer, offset: Int) throws {
        try upload(UnsafeRawBufferPointer(values), to: buffer, offset: offset, count: values.count)
    }

    public func uncheckedUpload(_ values: UnsafeBufferPointer<Int32>, to buffer: Buffer, offset: Int) throws {
        try upload(UnsafeRawBufferPointer(values), to: buffer, offset: offset, count: values.count)
    }

    func upload(_ bytes: UnsafeRawBufferPointer, to buffer: Buffer, offset: Int, count: Int) throws {
        let memory = clMemory(buffer)
        guard count > 0, let base = bytes.baseAddress else { return }
        // Blocking: the caller's pointer is only valid during this call.
        try checkCL(clEnqueueWriteBuffer(queue, memory, cl_bool(CL_TRUE), offset * 4, count * 4, base, 0, nil, nil),
                    "clEnqueueWriteBuffer")
    }

    var contextForStaging: cl_context { shared.context }
    var queueForStaging: cl_command_queue { shared.queue }

    public func uncheckedDownload(_ buffer: Buffer, offset: Int,
                                  into values: UnsafeMutableBufferPointer<Float>) throws {
        blockingCounter.increment()
        let memory = clMemory(buffer)
        guard values.count > 0, let base = values.baseAddress else { return }
        try checkCL(clEnqueueReadBuffer(queue, memory, cl_bool(CL_TRUE), offset * 4, values.count * 4, base, 0, nil,
                                        nil), "clEnqueueReadBuffer")
    }

    public func uncheckedCopy(_ src: Buffer, srcOffset: Int, to dst: Buffer, dstOffset: Int, count: Int) throws {
        let source = clMemory(src)
        let destination = clMemory(dst)
        guard count > 0 else { return }
        try checkCL(clEnqueueCopyBuffer(queue, source, destination, srcOffset * 4, dstOffset * 4, count * 4, 0, nil,
                                        nil), "clEnqueueCopyBuffer")
    }

    public func uncheckedFill(_ buffer: Buffer, value: Float, offset: Int, count: Int) throws {
        let memory = clMemory(buffer)
        guard count > 0 else { return }
        var pattern = value
        try checkCL(clEnqueueFillBuffer(queue, memory, &pattern, 4, offset * 4, count * 4, 0, nil, nil),
                    "clEnqueueFillBuffer")
    }

    public func synchronize() throws {
        blockingCounter.increment()
        try checkCL(clFinish(queue), "clFinish")
    }

    /// The `cl_mem` of a buffer of this backend's context; a buffer of another backend is a programming error.
    /// (Bounds were checked in front of the backend, by `ArgumentCheck`.)
    func clMemory(_ buffer: Buffer) -> cl_mem {
        guard let openCL = buffer as? OpenCLBuffer, openCL.context == shared.context else {
            preconditionFailure("\(name): a buffer of another backend was passed in")
        }
        return openCL.memory
    }
}
