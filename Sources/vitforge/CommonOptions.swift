import ArgumentParser
import ViTForgeDevice
#if canImport(Glibc)
import Glibc
#endif

/// The options every command takes.
struct CommonOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Compute device: auto, cpu, opencl or opencl:P.D (default: $VITFORGE_DEVICE, else auto).",
        discussion: "auto uses an OpenCL GPU when there is one, else the CPU backend. A device named explicitly "
            + "either works or the command fails; under auto an OpenCL failure falls back to the CPU with a warning.",
        valueName: "device"))
    var device: String?

    @Option(help: "Seed for every random choice (data order, initialisation, augmentation, random pruning).")
    var seed: UInt64 = 0

    /// The request after applying the flag / environment precedence.
    func deviceRequest() throws -> DeviceRequest {
        try DeviceSelection.request(flag: device)
    }

    func makeBackend() throws -> Backend {
        try DeviceSelection.makeBackend(deviceRequest())
    }

    /// Runs a long command's `body` on the requested device. Under `auto`, an OpenCL device that fails mid-run is
    /// replaced by the CPU backend: one warning, then `body` runs again with `fellBack` set, which makes it continue
    /// from the last checkpoint the failed attempt left. A device named explicitly fails with its one-line error.
    func onDevice(_ body: (_ backend: Backend, _ fellBack: Bool) throws -> Void) throws {
        let request = try deviceRequest()
        let backend = try DeviceSelection.makeBackend(request)
        do {
            try body(backend, false)
        } catch let error as BackendError where request == .auto && backend.kind == .openCL {
            switch error {
            case .openCL, .clblast: break
            default: throw error
            }
            DeviceSelection.printWarning("\(backend.name) failed mid-run (\(error)); continuing on the CPU backend "
                                         + "from the last checkpoint")
            try body(CPUBackend(), true)
        }
    }
}

/// Runs a command body so that any failure ends as one line on stderr (`error: …`) and exit status 1, instead of
/// a stack of wrapped errors.
func reportingErrors(_ body: () throws -> Void) throws {
    // Line-buffer stdout even into a file or pipe, so results interleave in order with the progress lines on stderr.
    setvbuf(stdout, nil, _IOLBF, 0)
    // Past `ulimit -f` the kernel sends SIGXFSZ, whose default kills the process before the writer can report
    // anything; ignored, the write fails with EFBIG and the command ends with "File too large" naming the file.
    signal(SIGXFSZ, SIG_IGN)
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        fputs("error: \(error)\n", stderr)
        throw ExitCode.failure
    }
}
