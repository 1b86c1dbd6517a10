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
}

/// Runs a command body so that any failure ends as one line on stderr (`error: …`) and exit status 1, instead of
/// a stack of wrapped errors.
func reportingErrors(_ body: () throws -> Void) throws {
    // Line-buffer stdout even into a file or pipe, so results interleave in order with the progress lines on stderr.
    setvbuf(stdout, nil, _IOLBF, 0)
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        fputs("error: \(error)\n", stderr)
        throw ExitCode.failure
    }
}
