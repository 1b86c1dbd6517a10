import ArgumentParser
import ViTForgeDevice
import ViTForgeTrain
#if canImport(Glibc)
import Glibc
#endif

/// The options every command takes.
struct CommonOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Compute device: auto, cpu, gpu, opencl or opencl:P.D (default: $VITFORGE_DEVICE, else auto).",
        discussion: "auto uses an OpenCL GPU when there is one, else the CPU backend. gpu is an OpenCL GPU or an "
            + "error; opencl is the OpenCL GPU, else any OpenCL device (an OpenCL CPU device such as PoCL too). A "
            + "device named explicitly either works or the command fails; under auto an OpenCL failure falls back to "
            + "the CPU with a warning. Every command prints the device it runs on once.",
        valueName: "device"))
    var device: String?

    @Option(help: "Seed for every random choice (data order, initialisation, augmentation, random pruning).")
    var seed: UInt64 = 0

    /// The request after applying the flag / environment precedence. A `VITFORGE_GEMM` this build cannot honour
    /// is the command's one-line error here, before any file is read (under auto the CPU may end up running it).
    func deviceRequest() throws -> DeviceRequest {
        _ = try GemmSelection.fromEnvironment().get()
        return try DeviceSelection.request(flag: device)
    }

    /// The backend for `--device`; `announce` prints the device line (not for a child whose standard output is
    /// a result to parse).
    func makeBackend(announce: Bool = true) throws -> Backend {
        let backend = try DeviceSelection.makeBackend(deviceRequest())
        if announce { DeviceAnnouncement.once(backend) }
        return backend
    }

    /// Runs a long command's `body` on the requested device. Under `auto`, an OpenCL device that fails mid-run is
    /// replaced by the CPU backend: one warning, then `body` runs again with `fellBack` set, which makes it continue
    /// from the last checkpoint the failed attempt left. A device named explicitly fails with its one-line error.
    func onDevice(_ body: (_ backend: Backend, _ fellBack: Bool) throws -> Void) throws {
        let request = try deviceRequest()
        let backend = try DeviceSelection.makeBackend(request)
        DeviceAnnouncement.once(backend)
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
    } catch let interrupted as PassInterrupted {
        // Ctrl-C outside a training phase, in a command without checkpoints of its own: nothing was written.
        print(interruptionLine("\(interrupted)", checkpoints: []))
        throw ExitCode(130)
    } catch {
        fputs("error: \(error)\n", stderr)
        throw ExitCode.failure
    }
}
