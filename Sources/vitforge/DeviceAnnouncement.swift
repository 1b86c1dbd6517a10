import ViTForgeDevice

/// The one line every command that computes prints before its work: which device and which backend run it, so that
/// `auto` and `opencl` never leave a user guessing (PoCL is an OpenCL *CPU* device, several times slower than the
/// CPU backend on the same cores).
enum DeviceAnnouncement {
    nonisolated(unsafe) private static var announced = false

    /// `device: cpu (OpenBLAS, 2 threads) — CPU backend` or `device: opencl:0.0 NAME (PLATFORM) — OpenCL backend on
    /// a GPU`.
    static func line(for backend: Backend) -> String {
        if let openCL = backend as? OpenCLBackend {
            let kind = openCL.device.type == .gpu ? "a GPU" : "an OpenCL \(openCL.device.type.rawValue.uppercased()) device"
            return "device: \(openCL.name) — OpenCL backend on \(kind)"
        }
        return "device: \(backend.name) — CPU backend"
    }

    /// Prints `line(for:)` on standard output the first time a command makes a backend (a fallback to the CPU says
    /// so in its own warning).
    static func once(_ backend: Backend) {
        guard !announced else { return }
        announced = true
        print(line(for: backend))
    }
}
