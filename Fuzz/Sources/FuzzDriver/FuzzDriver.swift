#if canImport(Glibc)
import Glibc
#endif

/// One fuzz input: the bytes libFuzzer generated. Returns 0 (libFuzzer's convention for "input processed").
public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                                 _ target: FuzzTarget) -> CInt

/// Hands the process to libFuzzer with `target` as the fuzz target, passing the command line on (libFuzzer's flags
/// and corpus folders). SwiftPM gives every executable target a Swift entry point of its own, so the harnesses
/// cannot use libFuzzer's `main`; `LLVMFuzzerRunDriver` is libFuzzer's documented entry for that case.
public func runFuzzer(_ target: FuzzTarget) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, target))
}

/// The input as a buffer (libFuzzer may pass a null pointer for the empty input).
public func fuzzBytes(_ start: UnsafePointer<UInt8>?, _ count: Int) -> UnsafeBufferPointer<UInt8> {
    UnsafeBufferPointer(start: count > 0 ? start : nil, count: count)
}

/// Replaces the file at `path` (a `scratchFile`) with the input, for readers that take a path.
public func writeInput(_ start: UnsafePointer<UInt8>?, _ count: Int, to path: String) {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard descriptor >= 0 else { fatalError("cannot write \(path)") }
    defer { close(descriptor) }
    var written = 0
    while written < count, let start {
        let result = write(descriptor, start + written, count - written)
        guard result > 0 else { fatalError("cannot write \(path)") }
        written += result
    }
}

/// A per-process file for `writeInput`, in memory (/dev/shm) where there is one: on ext4, truncating and rewriting
/// a file on disk flushes it each time (auto_da_alloc), which held the harnesses to ~200 inputs a second.
public func scratchFile(_ name: String) -> String {
    var status = stat()
    let folder = stat("/dev/shm", &status) == 0 ? "/dev/shm" : "/tmp"
    return "\(folder)/vitforge-fuzz-\(name)-\(getpid())"
}
