import ArgumentParser
import ViTForgeDevice
import ViTForgeModel

/// Lists every compute device and which one `--device auto` picks.
struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List the CPU backend and every OpenCL platform and device, and which one auto picks.",
        discussion: """
            With --check, builds the kernels and runs a small GEMM on the device selected by --device (or on every \
            device when --device is not given), and reports whether it works.
            """)

    @OptionGroup var common: CommonOptions

    @Flag(help: "Build the kernels and run a small GEMM on the selected device(s).")
    var check = false

    func run() throws {
        try reportingErrors {
            let request = try common.deviceRequest()
            var openCLDevices: [OpenCLDeviceInfo] = []
            var openCLProblem: String?
            do { openCLDevices = try OpenCLRuntime.devices() } catch { openCLProblem = "\(error)" }

            let gemm = try GemmSelection.fromEnvironment().get()
            print("cpu          CPU backend: OpenBLAS \(OpenBLAS.coreName), \(OpenBLAS.threads) threads (always available)")
            let oneDNN = GemmLibrary.oneDNNVersion.map { "oneDNN \($0) available" } ?? GemmLibrary.oneDNNProblem ?? ""
            let why = GemmSelection.isPinnedByEnvironment ? "as \(GemmSelection.variable) sets" : "the default"
            print("             GEMM library: \(gemm), \(why) (\(GemmSelection.variable)=openblas|onednn|auto; \(oneDNN))")
            if let warning = OpenBLAS.coreWarning { print("warning: \(warning)") }
            if let openCLProblem { print("OpenCL:      \(openCLProblem)") }
            var platform = -1
            for device in openCLDevices {
                if device.platformIndex != platform {
                    platform = device.platformIndex
                    print("platform \(platform): \(device.platformName)")
                }
                let memory = Formatting.decimal1(Double(device.globalMemoryBytes) / 1_073_741_824)
                print("""
                    \(device.spec.padding(12)) \(device.name)
                                 vendor \(device.vendor); type \(device.type.rawValue); \(memory) GiB global memory; \
                    \(device.computeUnits) compute units; \(device.openCLVersion); driver \(device.driverVersion); \
                    fp64 \(device.supportsFloat64 ? "yes" : "no"); \(device.localMemoryBytes / 1024) KiB local memory; \
                    work-groups up to \(device.maxWorkGroupSize)
                    """)
                if let refusal = DeviceSelection.refusal(device.capabilities) {
                    print("             not used: \(refusal) (auto skips it; --device \(device.spec) is refused)")
                }
            }
            let autoPick = DeviceSelection.autoChoice(from: openCLDevices)
            print("auto picks:  \(autoPick.map { "\($0.spec) (\($0.name))" } ?? "cpu (no OpenCL GPU found)")")

            guard check else { return }
            let requests: [DeviceRequest]
            if common.device != nil || request != .auto {
                requests = [request]
            } else {
                requests = [.cpu] + openCLDevices.map { .openCL(platform: $0.platformIndex, device: $0.deviceIndex) }
            }
            for request in requests {
                let backend = try DeviceSelection.makeBackend(request)
                let error = try DeviceCheck.run(on: backend)
                print("check \(request): \(backend.name): ok (GEMM max error \(Formatting.scientific1(error)))")
            }
        }
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
