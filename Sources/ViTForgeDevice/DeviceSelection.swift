#if canImport(Glibc)
import Glibc
import ViTForgeSupport
#endif

/// What the user asked for with `--device` or `VITFORGE_DEVICE`.
public enum DeviceRequest: Equatable, Sendable, CustomStringConvertible {
    /// An OpenCL GPU if there is one, otherwise the CPU backend (PoCL, an OpenCL *CPU* device, is never preferred
    /// over the CPU backend: OpenBLAS is several times faster on the same cores).
    case auto
    case cpu
    /// `gpu`: an OpenCL device of GPU type (the one with the most memory) or a one-line error. Never an OpenCL CPU
    /// device such as PoCL, which runs several times slower than the CPU backend on the same cores.
    case gpu
    /// `opencl`: the best OpenCL device (a GPU if any, else the first device); `opencl:P.D`: platform P, device D.
    case openCL(platform: Int?, device: Int?)

    /// Parses `auto`, `cpu`, `opencl` or `opencl:P.D`.
    public init(parsing spec: String) throws {
        let text = spec.lowercased()
        switch text {
        case "auto": self = .auto
        case "cpu": self = .cpu
        case "gpu": self = .gpu
        case "opencl": self = .openCL(platform: nil, device: nil)
        default:
            let parts = text.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0] == "opencl" else { throw Self.invalid(spec) }
            let indices = parts[1].split(separator: ".", omittingEmptySubsequences: false)
            guard indices.count == 2, let platform = Int(indices[0]), let device = Int(indices[1]),
                  platform >= 0, device >= 0 else { throw Self.invalid(spec) }
            self = .openCL(platform: platform, device: device)
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .cpu: return "cpu"
        case .gpu: return "gpu"
        case .openCL(nil, _), .openCL(_, nil): return "opencl"
        case let .openCL(platform?, device?): return "opencl:\(platform).\(device)"
        }
    }

    private static func invalid(_ spec: String) -> BackendError {
        .invalidDevice("invalid device '\(spec)': expected auto, cpu, gpu, opencl or opencl:P.D (see `vitforge devices`)")
    }
}

/// Turns a `DeviceRequest` into a backend, following the rules above: a device the user named explicitly either
/// works or fails with a one-line error; under `auto`, an OpenCL failure falls back to the CPU with one warning.
public enum DeviceSelection {
    /// The request from the `--device` flag if given, else from `VITFORGE_DEVICE`, else `auto`.
    public static func request(flag: String?) throws -> DeviceRequest {
        if let flag { return try DeviceRequest(parsing: flag) }
        if let pointer = getenv("VITFORGE_DEVICE") {
            let value = String(cString: pointer)
            if !value.isEmpty {
                do { return try DeviceRequest(parsing: value) } catch let error as BackendError {
                    throw BackendError.invalidDevice("VITFORGE_DEVICE: \(error)")
                }
            }
        }
        return .auto
    }

    /// The OpenCL device `auto` uses: the GPU with the most global memory; nil when there is no GPU.
    public static func autoChoice(from devices: [OpenCLDeviceInfo]) -> OpenCLDeviceInfo? {
        devices.filter { $0.type == .gpu }.max { $0.globalMemoryBytes < $1.globalMemoryBytes }
    }

    /// The device plain `opencl` names: the `auto` GPU if any, else the first device (PoCL on CI).
    public static func explicitChoice(from devices: [OpenCLDeviceInfo]) -> OpenCLDeviceInfo? {
        autoChoice(from: devices) ?? devices.first
    }

    /// Makes the backend for `request`. `warn` receives the (single-line) fallback warning under `auto`.
    public static func makeBackend(_ request: DeviceRequest, warn: (String) -> Void = printWarning) throws -> Backend {
        switch request {
        case .cpu:
            return CPUBackend()
        case .auto:
            let devices: [OpenCLDeviceInfo]
            do { devices = try OpenCLRuntime.devices() } catch {
                // No ICD or no platform is the normal state of a machine without OpenCL, not a failure to report.
                return CPUBackend()
            }
            // The fault hook stands in for a GPU with whatever OpenCL device there is (PoCL on CI).
            let standIn = FaultInjection.openCLFailureStep == nil ? nil : explicitChoice(from: devices)
            guard let gpu = autoChoice(from: devices) ?? standIn else { return CPUBackend() }
            do {
                return try OpenCLBackend(device: gpu)
            } catch {
                warnOnce("OpenCL device \(gpu.spec) (\(gpu.name)) failed, using the CPU backend: \(error)", warn)
                return CPUBackend()
            }
        case .gpu:
            let devices: [OpenCLDeviceInfo]
            do { devices = try OpenCLRuntime.devices() } catch {
                throw BackendError.noOpenCLDevice("--device gpu: no OpenCL GPU (\(error)); use --device cpu")
            }
            guard let gpu = autoChoice(from: devices) else {
                throw BackendError.noOpenCLDevice("--device gpu: no OpenCL GPU; found only "
                    + (devices.isEmpty ? "no OpenCL device"
                        : devices.map { "\($0.spec) \($0.name) (\($0.type.rawValue))" }.joined(separator: ", "))
                    + "; use --device cpu, or --device opencl to run on an OpenCL CPU device anyway")
            }
            return try OpenCLBackend(device: gpu)
        case let .openCL(platform, device):
            let devices: [OpenCLDeviceInfo]
            do { devices = try OpenCLRuntime.devices() } catch {
                throw BackendError.noOpenCLDevice("--device \(request): \(error)")
            }
            let chosen: OpenCLDeviceInfo
            if let platform, let device {
                guard let match = devices.first(where: { $0.platformIndex == platform && $0.deviceIndex == device })
                else {
                    let known = devices.map(\.spec).joined(separator: ", ")
                    throw BackendError.invalidDevice(
                        "no OpenCL device opencl:\(platform).\(device); found: \(known.isEmpty ? "none" : known)")
                }
                chosen = match
            } else {
                guard let first = explicitChoice(from: devices) else {
                    throw BackendError.noOpenCLDevice("no OpenCL device found")
                }
                chosen = first
            }
            return try OpenCLBackend(device: chosen)
        }
    }

    /// Writes `warning: …` to standard error.
    public static func printWarning(_ message: String) {
        fputs("warning: \(message)\n", stderr)
    }

    nonisolated(unsafe) private static var warned = false

    private static func warnOnce(_ message: String, _ warn: (String) -> Void) {
        guard !warned else { return }
        warned = true
        warn(message)
    }
}
