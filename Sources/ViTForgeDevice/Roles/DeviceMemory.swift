/// A role of `Backend`: buffers and the queue (identity, allocation, transfers, staging, waiting for the device).
public protocol DeviceMemory: AnyObject {
    /// A short description for logs and reports: `cpu (OpenBLAS, 2 threads)`, `opencl:0.0 NVIDIA H100 …`.
    var name: String { get }

    var kind: BackendKind { get }
    /// What the device offers (float64, local memory, work-group sizes): device selection refuses a device that
    /// lacks what ViTForge needs (`DeviceSelection.requirements`), and `supports(_:)` asks it.
    var capabilities: DeviceCapabilities { get }

    /// The implementation behind `allocate`, its arguments already checked.
    func uncheckedAllocate(_ count: Int) throws -> Buffer

    /// The implementation behind `upload`, its arguments already checked.
    func uncheckedUpload(_ values: UnsafeBufferPointer<Float>, to buffer: Buffer, offset: Int) throws

    /// The implementation behind `upload`, its arguments already checked.
    func uncheckedUpload(_ values: UnsafeBufferPointer<Int32>, to buffer: Buffer, offset: Int) throws

    /// The implementation behind `download`, its arguments already checked.
    func uncheckedDownload(_ buffer: Buffer, offset: Int, into values: UnsafeMutableBufferPointer<Float>) throws

    /// The implementation behind `copy`, its arguments already checked.
    func uncheckedCopy(_ src: Buffer, srcOffset: Int, to dst: Buffer, dstOffset: Int, count: Int) throws

    /// The implementation behind `fill`, its arguments already checked.
    func uncheckedFill(_ buffer: Buffer, value: Float, offset: Int, count: Int) throws

    /// Waits until every enqueued operation has finished (for timing; results are ordered without it).
    func synchronize() throws

    /// The implementation behind `makeStaging`, its arguments already checked.
    func uncheckedMakeStaging(_ count: Int) throws -> StagingBuffer

    /// The implementation behind `uploadAsync`, its arguments already checked.
    func uncheckedUploadAsync(_ staging: StagingBuffer, count: Int, to buffer: Buffer, offset: Int) throws

    /// The blocking calls made on this backend so far (`download`, `sum`, `sumOfSquares`, `sumOfAbs`,
    /// `synchronize`): a debug counter for tests and benchmarks that check a path does not wait for the device.
    var blockingCalls: Int { get }
}

/// The checked entry points: every argument check of the device layer, made once here for every backend (see
/// `ArgumentCheck`).
extension DeviceMemory {
    /// A buffer of `count` 4-byte elements, owned by this backend. Contents are undefined until written.
    public func allocate(_ count: Int) throws -> Buffer {
        _ = try ArgumentCheck("allocate", ["count": count])
        return try uncheckedAllocate(count)
    }

    public func upload(_ values: UnsafeBufferPointer<Float>, to buffer: Buffer, offset: Int) throws {
        try ArgumentCheck("upload").buffer(buffer, "buffer", offset: offset, count: values.count)
        try uncheckedUpload(values, to: buffer, offset: offset)
    }

    public func upload(_ values: UnsafeBufferPointer<Int32>, to buffer: Buffer, offset: Int) throws {
        try ArgumentCheck("upload").buffer(buffer, "buffer", offset: offset, count: values.count)
        try uncheckedUpload(values, to: buffer, offset: offset)
    }

    public func download(_ buffer: Buffer, offset: Int, into values: UnsafeMutableBufferPointer<Float>) throws {
        try ArgumentCheck("download").buffer(buffer, "buffer", offset: offset, count: values.count)
        try uncheckedDownload(buffer, offset: offset, into: values)
    }

    /// `dst[dstOffset ..< dstOffset+count] = src[srcOffset ..< srcOffset+count]`.
    public func copy(_ src: Buffer, srcOffset: Int, to dst: Buffer, dstOffset: Int, count: Int) throws {
        let check = try ArgumentCheck("copy", ["count": count])
        try check.buffer(src, "src", offset: srcOffset, count: count)
        try check.buffer(dst, "dst", offset: dstOffset, count: count)
        try check.disjoint(src, srcOffset, dst, dstOffset, count: count)
        try uncheckedCopy(src, srcOffset: srcOffset, to: dst, dstOffset: dstOffset, count: count)
    }

    /// `buffer[offset ..< offset+count] = value`.
    public func fill(_ buffer: Buffer, value: Float, offset: Int, count: Int) throws {
        try ArgumentCheck("fill").buffer(buffer, "buffer", offset: offset, count: count)
        try uncheckedFill(buffer, value: value, offset: offset, count: count)
    }

    /// Host memory of `count` 4-byte elements owned by this backend (page-locked where the driver offers it), the
    /// source of `uploadAsync`. Ownership: the host writes it, then hands it to `uploadAsync`; from then until
    /// `waitForUpload()` returns, the device may be reading it and the host must not write it. A caller that fills
    /// the next batch while the device works on this one keeps two and alternates (double buffering).
    public func makeStaging(_ count: Int) throws -> StagingBuffer {
        _ = try ArgumentCheck("makeStaging", ["count": count])
        return try uncheckedMakeStaging(count)
    }

    /// Enqueues `buffer[offset ..< offset+count] = staging[0 ..< count]` and returns without waiting; operations
    /// enqueued later see the new contents (the queue is in order). See `makeStaging` for when `staging` may be
    /// written again.
    public func uploadAsync(_ staging: StagingBuffer, count: Int, to buffer: Buffer, offset: Int) throws {
        let check = try ArgumentCheck("uploadAsync", ["count": count])
        try check.require(count <= staging.count, "count \(count) is more than the staging area's \(staging.count)")
        try check.buffer(buffer, "buffer", offset: offset, count: count)
        try uncheckedUploadAsync(staging, count: count, to: buffer, offset: offset)
    }
}
