import Testing
import ViTForgeDevice

/// The backends the model tests run on: the CPU backend, and the first OpenCL device when there is one (PoCL on CI).
/// One instance each, shared by every test, so kernels compile once per run.
struct ModelBackend: @unchecked Sendable, CustomTestStringConvertible {
    let backend: any Backend
    var testDescription: String { backend.kind.rawValue }
}

enum ModelTestBackends {
    static let all: [ModelBackend] = {
        var list = [ModelBackend(backend: CPUBackend())]
        if let device = DeviceSelection.explicitChoice(from: (try? OpenCLRuntime.devices()) ?? []),
           let backend = try? OpenCLBackend(device: device) {
            list.append(ModelBackend(backend: backend))
        }
        return list
    }()
}
