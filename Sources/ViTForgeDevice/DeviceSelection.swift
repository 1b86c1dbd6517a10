import ViTForgeSupport
#if canImport(Glibc)
import Glibc
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

    /// What ViTForge needs of any device: the loss sums, gradient clipping and the pruning statistics accumulate in
    /// float64 on the device. (Local memory and work-group sizes are not required: kernels that need more than a
    /// device offers fall back to their row-per-work-item shape.)
    public static let requirements: [DeviceRequirement] = [.float64]

    /// Why a device with these capabilities would not be used, as one phrase; nil when it is suitable.
    public static func refusal(_ capabilities: DeviceCapabilities) -> String? {
        let missing = capabilities.unmet(requirements)
        if missing.isEmpty { return nil }
        return "lacks " + missing.map(\.description).joined(separator: " and ") + ", which training needs"
    }

    /// The OpenCL device `auto` uses: the suitable GPU with the most global memory; nil when there is none.
    public static func autoChoice(from devices: [OpenCLDeviceInfo]) -> OpenCLDeviceInfo? {
        largestGPU(devices.filter { refusal($0.capabilities) == nil })
    }

    /// The device plain `opencl` names: the GPU with the most memory if any, else the first device (PoCL on CI).
    /// It may be unsuitable; `makeBackend` then refuses it.
    public static func explicitChoice(from devices: [OpenCLDeviceInfo]) -> OpenCLDeviceInfo? {
        autoChoice(from: devices) ?? largestGPU(devices) ?? devices.first
    }

    private static func largestGPU(_ devices: [OpenCLDeviceInfo]) -> OpenCLDeviceInfo? {
        devices.filter { $0.type == .gpu }.max { $0.globalMemoryBytes < $1.globalMemoryBytes }
    }

    /// An explicitly chosen device that cannot run ViTForge is an error: one line naming it and what it lacks.
    static func requireSuitable(_ device: OpenCLDeviceInfo, _ request: DeviceRequest) throws {
        if let refusal = refusal(device.capabilities) {
            throw BackendError.unsupported("--device \(request): \(device.spec) (\(device.name)) \(refusal); "
                                           + "use --device cpu")
        }
    }

    /// Makes the backend for `request`. `warn` receives the (single-line) fallback warning under `auto`;
    /// `listDevices` is how the OpenCL devices are found (tests pass made-up ones).
    public static func makeBackend(_ request: DeviceRequest,
                                   listDevices: () throws -> [OpenCLDeviceInfo] = OpenCLRuntime.devices,
                                   warn: (String) -> Void = printWarning) throws -> Backend {
        // A CPU backend may be made below (or as a fallback later): a VITFORGE_GEMM it cannot honour is an error
        // now, not a silent OpenBLAS.
        if case .failure(let error) = GemmSelection.fromEnvironment() {
            throw BackendError.invalidArgument(error.description)
        }
        switch request {
        case .cpu:
            return CPUBackend()
        case .auto:
            let devices: [OpenCLDeviceInfo]
            do { devices = try listDevices() } catch {
                // No ICD or no platform is the normal state of a machine without OpenCL, not a failure to report.
                return CPUBackend()
            }
            // The fault hook stands in for a GPU with whatever OpenCL device there is (PoCL on CI).
            let standIn = FaultInjection.openCLFailureStep == nil ? nil : explicitChoice(from: devices)
            guard let gpu = autoChoice(from: devices) ?? standIn else {
                if let refused = largestGPU(devices), let refusal = refusal(refused.capabilities) {
                    warnOnce("OpenCL GPU \(refused.spec) (\(refused.name)) \(refusal), using the CPU backend", warn)
                }
                return CPUBackend()
            }
            do {
                return try OpenCLBackend(device: gpu)
            } catch {
                warnOnce("OpenCL device \(gpu.spec) (\(gpu.name)) failed, using the CPU backend: \(error)", warn)
                return CPUBackend()
            }
        case .gpu:
            let devices: [OpenCLDeviceInfo]
            do { devices = try listDevices() } catch {
                throw BackendError.noOpenCLDevice("--device gpu: no OpenCL GPU (\(error)); use --device cpu")
            }
            guard let gpu = largestGPU(devices) else {
                throw BackendError.noOpenCLDevice("--device gpu: no OpenCL GPU; found only "
                    + (devices.isEmpty ? "no OpenCL device"
                        : devices.map { "\($0.spec) \($0.name) (\($0.type.rawValue))" }.joined(separator: ", "))
                    + "; use --device cpu, or --device opencl to run on an OpenCL CPU device anyway")
            }
            try requireSuitable(gpu, request)
            return try OpenCLBackend(device: gpu)
        case let .openCL(platform, device):
            let devices: [OpenCLDeviceInfo]
            do { devices = try listDevices() } catch {
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
            try requireSuitable(chosen, request)
            return try OpenCLBackend(device: chosen)
        }
    }

    /// Writes `warning: …` to standard error.
    public static func printWarning(_ message: String) {
        fputs("warning: \(message)\n", stderr)
    }

    /// Whether the one fallback warning of this process has been given (tests reset it).
    nonisolated(unsafe) static var warned = false

    private static func warnOnce(_ message: String, _ warn: (String) -> Void) {
        guard !warned else { return }
        warned = true
        warn(message)
    }
}
