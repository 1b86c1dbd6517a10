import COpenCL

/// Staging for `OpenCLBackend.uploadAsync`: a `CL_MEM_ALLOC_HOST_PTR` buffer mapped once for its whole life, the
/// pinned host memory from which drivers (NVIDIA's among them) copy by DMA without an extra host copy. The event of
/// the last upload from it is kept until `waitForUpload`.
final class OpenCLStagingBuffer: StagingBuffer {
    let memory: cl_mem
    let queue: cl_command_queue
    let context: cl_context
    private var pending: cl_event?

    init(context: cl_context, queue: cl_command_queue, count: Int) throws {
        var status: cl_int = CL_SUCCESS
        let bytes = 4 * max(count, 1)
        guard let memory = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR), bytes,
                                          nil, &status), status == CL_SUCCESS
        else { throw BackendError.openCL(call: "clCreateBuffer(CL_MEM_ALLOC_HOST_PTR)", code: status) }
        // Mapped (blocking, once) for writing by the host; the device never uses `memory` itself, only the pointer.
        guard let base = clEnqueueMapBuffer(queue, memory, cl_bool(CL_TRUE), cl_map_flags(CL_MAP_WRITE), 0, bytes, 0,
                                            nil, nil, &status), status == CL_SUCCESS
        else {
            clReleaseMemObject(memory)
            throw BackendError.openCL(call: "clEnqueueMapBuffer", code: status)
        }
        self.memory = memory
        self.queue = queue
        self.context = context
        super.init(count: count, base: base)
    }

    deinit {
        if let pending {
            clWaitForEvents(1, [pending])
            clReleaseEvent(pending)
        }
        clEnqueueUnmapMemObject(queue, memory, base, 0, nil, nil)
        // The release waits for the unmap: OpenCL frees a memory object once no enqueued command uses it.
        clReleaseMemObject(memory)
    }

    /// Records the event of an upload just enqueued from this area (releasing the previous one's).
    func track(_ event: cl_event?) {
        if let pending { clReleaseEvent(pending) }
        pending = event
    }

    override func waitForUpload() throws {
        guard let event = pending else { return }
        pending = nil
        defer { clReleaseEvent(event) }
        try checkCL(clWaitForEvents(1, [event]), "clWaitForEvents")
    }
}

extension OpenCLBackend {
    public func uncheckedMakeStaging(_ count: Int) throws -> StagingBuffer {
        return try OpenCLStagingBuffer(context: contextForStaging, queue: queueForStaging, count: count)
    }

    public func uncheckedUploadAsync(_ staging: StagingBuffer, count: Int, to buffer: Buffer, offset: Int) throws {
        guard let area = staging as? OpenCLStagingBuffer, area.context == contextForStaging else {
            preconditionFailure("\(name): a staging buffer of another backend was passed in")
        }
        let memory = clMemory(buffer)
        guard count > 0 else { return }
        var event: cl_event?
        // Non-blocking: the area stays valid and unwritten until `waitForUpload`, the ownership rule's half here.
        try checkCL(clEnqueueWriteBuffer(queueForStaging, memory, cl_bool(CL_FALSE), offset * 4, count * 4,
                                         area.base, 0, nil, &event), "clEnqueueWriteBuffer")
        area.track(event)
    }
}
