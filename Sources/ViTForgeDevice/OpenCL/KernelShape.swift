#if canImport(Glibc)
import Glibc
#endif

/// Which shape of kernel the OpenCL backend launches where an operation has two.
///
/// A GPU wants many work-items per row with reductions in local memory (neighbouring work-items reading
/// neighbouring addresses), and two-stage column sums; a CPU device (PoCL, which CI and laptops use) runs a
/// work-group as a loop and pays for every barrier, so one work-item per row with a plain loop is faster there.
/// Both shapes compute the same function and both are in the op table (the tests force `.gpu` on PoCL), so CI
/// checks the GPU shape without a GPU.
public enum OpenCLKernelShape: String, Sendable, CaseIterable {
    /// Work-group-per-row and tiled kernels: GPUs and accelerators.
    case gpu
    /// One work-item per row or column, barrier-free loops: CPU devices.
    case cpuDevice = "cpu"

    /// The shape for a device: `VITFORGE_OPENCL_KERNELS=gpu|cpu` when set (kernel development, benchmarks),
    /// else by device type.
    public static func forDevice(_ info: OpenCLDeviceInfo) throws -> OpenCLKernelShape {
        if let value = getenv("VITFORGE_OPENCL_KERNELS"), value.pointee != 0 {
            let text = String(cString: value)
            guard let shape = OpenCLKernelShape(rawValue: text) else {
                throw BackendError.invalidArgument(
                    "VITFORGE_OPENCL_KERNELS=\(text): expected \"gpu\" or \"cpu\"")
            }
            return shape
        }
        return natural(for: info)
    }

    /// The shape a device's type calls for: `.cpuDevice` for CPU devices, `.gpu` for everything else.
    public static func natural(for info: OpenCLDeviceInfo) -> OpenCLKernelShape {
        info.type == .cpu ? .cpuDevice : .gpu
    }

    /// The other shape (tests run it on the same device to check both).
    public var other: OpenCLKernelShape { self == .gpu ? .cpuDevice : .gpu }
}
