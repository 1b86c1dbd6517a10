import COpenCL
import ViTForgeSupport
#if canImport(Glibc)
import Glibc
#endif

/// Every CLBlast call of the process goes through this lock: CLBlast 1.5.3 (Debian 12) races on its program
/// cache when two threads call it at once (fixed in 1.6.1).
let clblastLock = ProcessLock()

/// The OpenCL objects shared by every backend on one device: one context, one in-order queue, and the programs
/// built for it (keyed by a hash of sources, options and driver). Creating a backend twice on the same device,
/// as tests do, therefore neither builds the kernels twice nor splits work across two queues.
/// Lives for the rest of the process once created.
final class OpenCLDeviceContext: @unchecked Sendable {
    let info: OpenCLDeviceInfo
    let device: cl_device_id?
    let context: cl_context
    let queue: cl_command_queue
    /// The queue's events, when it was created with profiling (`OpenCLProfiling`); nil otherwise.
    let eventLog: OpenCLEventLog?
    /// Built programs by cache key; only touched under `OpenCLDeviceContext.lock`.
    private var programs: [UInt64: cl_program] = [:]

    private static let lock = ProcessLock()
    private nonisolated(unsafe) static var contexts: [String: OpenCLDeviceContext] = [:]

    /// The shared context of `info`'s device, created on first use.
    static func shared(for info: OpenCLDeviceInfo) throws -> OpenCLDeviceContext {
        try lock.withLock {
            let key = "\(info.spec) \(info.name)"
            if let existing = contexts[key] { return existing }
            let created = try OpenCLDeviceContext(info: info)
            contexts[key] = created
            return created
        }
    }

    private init(info: OpenCLDeviceInfo) throws {
        self.info = info
        var (platform, device) = try OpenCLRuntime.deviceID(for: info)
        self.device = device
        var status: cl_int = CL_SUCCESS
        var properties: [cl_context_properties] = [
            cl_context_properties(CL_CONTEXT_PLATFORM), cl_context_properties(Int(bitPattern: platform)), 0,
        ]
        guard let context = clCreateContext(&properties, 1, &device, nil, nil, &status) else {
            throw BackendError.openCL(call: "clCreateContext", code: status)
        }
        try checkCL(status, "clCreateContext")
        let profiling = OpenCLProfiling.requested
        let queueProperties = profiling ? cl_command_queue_properties(CL_QUEUE_PROFILING_ENABLE) : 0
        guard let queue = clCreateCommandQueue(context, device, queueProperties, &status) else {
            clReleaseContext(context)
            throw BackendError.openCL(call: "clCreateCommandQueue", code: status)
        }
        self.context = context
        self.queue = queue
        eventLog = profiling ? OpenCLEventLog() : nil
    }

    /// The program built from `sources` (concatenated in order) with `options`: from memory if this process built it
    /// already, else from the on-disk binary cache, else compiled (and then written to the disk cache).
    func program(sources: [(name: String, source: String)], options: String) throws -> cl_program {
        let source = Self.concatenate(sources)
        var hasher = FNV1a64()
        // Everything that changes the binary: the exact text, the options, and which compiler produced it.
        for part in [source, options, info.platformName, info.name, info.vendor, info.openCLVersion,
                     info.driverVersion] {
            hasher.combine(part)
            hasher.combine([0])
        }
        let key = hasher.value
        return try Self.lock.withLock {
            if let program = programs[key] { return program }
            let store = KernelBinaryStore()
            if let binary = store?.load(key: key), let program = loadBinary(binary, options: options) {
                programs[key] = program
                return program
            }
            let program = try build(source: source, options: options)
            if let binary = try? programBinary(program) { store?.save(binary, key: key) }
            programs[key] = program
            return program
        }
    }

    /// `#line` markers make the compiler report `layernorm.cl:12:5: error: …` instead of a line number in the
    /// concatenation.
    static func concatenate(_ sources: [(name: String, source: String)]) -> String {
        var text = ""
        for (name, source) in sources {
            text += "#line 1 \"\(name)\"\n"
            text += source
            if !source.hasSuffix("\n") { text += "\n" }
        }
        return text
    }

    private var deviceLabel: String { "\(info.spec) \(info.name)" }

    private func build(source: String, options: String) throws -> cl_program {
        var status: cl_int = CL_SUCCESS
        let created: cl_program? = source.withCString { text in
            var pointer: UnsafePointer<CChar>? = text
            return clCreateProgramWithSource(context, 1, &pointer, nil, &status)
        }
        guard let program = created else {
            throw BackendError.openCL(call: "clCreateProgramWithSource", code: status)
        }
        var device = self.device
        let buildStatus = withStandardErrorSilenced { clBuildProgram(program, 1, &device, options, nil, nil) }
        if buildStatus != CL_SUCCESS {
            let log = buildLog(program)
            clReleaseProgram(program)
            if buildStatus == CL_BUILD_PROGRAM_FAILURE || !log.isEmpty {
                throw BackendError.kernelBuild(device: deviceLabel, log: Self.errorFirst(log))
            }
            throw BackendError.openCL(call: "clBuildProgram", code: buildStatus)
        }
        return program
    }

    /// nil when the binary does not load or link on this driver (stale or corrupt cache entry): the caller then
    /// compiles from source.
    private func loadBinary(_ binary: [UInt8], options: String) -> cl_program? {
        var status: cl_int = CL_SUCCESS
        var binaryStatus: cl_int = CL_SUCCESS
        var device = self.device
        var length = binary.count
        let created: cl_program? = binary.withUnsafeBufferPointer { bytes in
            var pointer: UnsafePointer<UInt8>? = bytes.baseAddress
            return clCreateProgramWithBinary(context, 1, &device, &length, &pointer, &binaryStatus, &status)
        }
        guard let program = created else { return nil }
        if status != CL_SUCCESS || binaryStatus != CL_SUCCESS
            || clBuildProgram(program, 1, &device, options, nil, nil) != CL_SUCCESS {
            clReleaseProgram(program)
            return nil
        }
        return program
    }

    private func programBinary(_ program: cl_program) throws -> [UInt8] {
        var size = 0
        try checkCL(clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size,
                                     &size, nil), "clGetProgramInfo")
        guard size > 0 else { return [] }
        var binary = [UInt8](repeating: 0, count: size)
        try binary.withUnsafeMutableBufferPointer { bytes in
            var pointer: UnsafeMutablePointer<UInt8>? = bytes.baseAddress
            try checkCL(clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARIES),
                                         MemoryLayout<UnsafeMutablePointer<UInt8>?>.size, &pointer, nil),
                        "clGetProgramInfo")
        }
        return binary
    }

    private func buildLog(_ program: cl_program) -> String {
        var size = 0
        guard clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size)
            == CL_SUCCESS, size > 1
        else { return "" }
        var bytes = [CChar](repeating: 0, count: size + 1)
        guard clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &bytes, nil)
            == CL_SUCCESS
        else { return "" }
        return bytes.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Build logs open with warnings and notes on some drivers; the first `error` line goes first (it is the line
    /// `BackendError.kernelBuild` prints), followed by the start of the log for context.
    static func errorFirst(_ log: String) -> String {
        let lines = log.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        let head = Array(lines.prefix(20))
        guard let firstError = lines.first(where: { $0.contains("error") }) else { return head.joined(separator: "\n") }
        return ([firstError] + head.filter { $0 != firstError }).joined(separator: "\n")
    }
}

/// Program binaries on disk, one file per cache key: `$VITFORGE_CACHE_DIR`, else `$XDG_CACHE_HOME/vitforge/kernels`,
/// else `~/.cache/vitforge/kernels`. Every failure here is silent: the cache only saves time.
///
/// File layout: 8-byte magic, payload length (UInt64 LE), FNV-1a of the payload (UInt64 LE), payload. A truncated or
/// damaged file fails the length or hash check and is rebuilt instead of being handed to the driver.
struct KernelBinaryStore {
    static let magic: [UInt8] = Array("VFKBIN01".utf8)
    let directory: String

    init?() {
        if let explicit = Self.environment("VITFORGE_CACHE_DIR") {
            directory = explicit
        } else if let xdg = Self.environment("XDG_CACHE_HOME") {
            directory = xdg + "/vitforge/kernels"
        } else if let home = Self.environment("HOME") {
            directory = home + "/.cache/vitforge/kernels"
        } else {
            return nil
        }
    }

    private static func environment(_ name: String) -> String? {
        guard let value = getenv(name), value.pointee != 0 else { return nil }
        return String(cString: value)
    }

    func path(key: UInt64) -> String {
        let hex = String(key, radix: 16)
        return directory + "/" + String(repeating: "0", count: 16 - hex.count) + hex + ".clbin"
    }

    func load(key: UInt64) -> [UInt8]? {
        let fd = open(path(key: key), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 24 else { return nil }
        var contents = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < contents.count {
            let got = contents.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if got <= 0 { return nil }
            done += got
        }
        guard Array(contents[0 ..< 8]) == Self.magic else { return nil }
        let length = Self.readUInt64(contents, at: 8), checksum = Self.readUInt64(contents, at: 16)
        guard length == UInt64(contents.count - 24) else { return nil }
        let payload = Array(contents[24...])
        var hasher = FNV1a64()
        hasher.combine(payload)
        return hasher.value == checksum ? payload : nil
    }

    /// Written to a temporary file in the same folder, then renamed, so a concurrent reader (another process
    /// starting at the same time) sees either nothing or the whole file.
    func save(_ payload: [UInt8], key: UInt64) {
        guard !payload.isEmpty, Self.makeDirectories(directory) else { return }
        var hasher = FNV1a64()
        hasher.combine(payload)
        var contents = Self.magic
        Self.appendUInt64(UInt64(payload.count), to: &contents)
        Self.appendUInt64(hasher.value, to: &contents)
        contents += payload
        let final = path(key: key)
        let temporary = final + ".tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        var done = 0
        while done < contents.count {
            let wrote = contents.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if wrote <= 0 { break }
            done += wrote
        }
        let closed = close(fd) == 0
        if done == contents.count, closed, rename(temporary, final) == 0 { return }
        unlink(temporary)
    }

    /// `mkdir -p`; also the GEMM choice table's (`GemmChoiceTable`), which lives in the same folder.
    static func makeDirectories(_ path: String) -> Bool {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return false }
        }
        return true
    }

    private static func appendUInt64(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private static func readUInt64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0 ..< 8 { value |= UInt64(bytes[offset + index]) << UInt64(8 * index) }
        return value
    }
}

/// Runs `body` with file descriptor 2 pointed at /dev/null. Some drivers' compilers (PoCL's clang) print their
/// own diagnostics ("1 error generated.") to the process's stderr while building; the build log already carries
/// them, and the user should see one line from us, not the compiler's chatter.
private func withStandardErrorSilenced<T>(_ body: () -> T) -> T {
    fflush(stderr)
    let saved = dup(2)
    let null = open("/dev/null", O_WRONLY)
    guard saved >= 0, null >= 0 else {
        if saved >= 0 { close(saved) }
        if null >= 0 { close(null) }
        return body()
    }
    dup2(null, 2)
    close(null)
    defer {
        fflush(stderr)
        dup2(saved, 2)
        close(saved)
    }
    return body()
}
