/// What a device offers that ViTForge's operations may need (`DeviceMemory.capabilities`). Device selection asks it
/// before opening a device, so that a device that cannot run ViTForge is refused with one line instead of failing
/// at step 1 (issue 26: a device without float64 was chosen and failed in `accumulateSum`).
public struct DeviceCapabilities: Sendable, Equatable {
    /// float64 arithmetic on the device (OpenCL's cl_khr_fp64): the loss sums, clipping and statistics need it.
    public var float64: Bool
    /// Local (work-group shared) memory per work-group, in bytes.
    public var localMemoryBytes: Int
    /// The largest work-group the device runs.
    public var maxWorkGroupSize: Int

    public init(float64: Bool, localMemoryBytes: Int, maxWorkGroupSize: Int) {
        self.float64 = float64
        self.localMemoryBytes = localMemoryBytes
        self.maxWorkGroupSize = maxWorkGroupSize
    }

    /// The CPU backend: float64 everywhere, no work-groups and so no limit on them.
    public static let cpu = DeviceCapabilities(float64: true, localMemoryBytes: .max, maxWorkGroupSize: .max)

    public func supports(_ requirement: DeviceRequirement) -> Bool {
        switch requirement {
        case .float64: return float64
        case let .localMemory(bytes): return localMemoryBytes >= bytes
        case let .workGroupSize(size): return maxWorkGroupSize >= size
        }
    }

    /// The requirements this device does not meet, in the order given.
    public func unmet(_ requirements: [DeviceRequirement]) -> [DeviceRequirement] {
        requirements.filter { !supports($0) }
    }
}

/// One thing an operation, or ViTForge as a whole, needs of a device.
public enum DeviceRequirement: Sendable, Equatable, CustomStringConvertible {
    case float64
    case localMemory(bytes: Int)
    case workGroupSize(Int)

    /// What is missing, as `devices` and the refusal name it.
    public var description: String {
        switch self {
        case .float64: return "float64 (cl_khr_fp64)"
        case let .localMemory(bytes): return "\(bytes / 1024) KiB of local memory"
        case let .workGroupSize(size): return "work-groups of \(size)"
        }
    }
}

extension DeviceMemory {
    public func supports(_ requirement: DeviceRequirement) -> Bool { capabilities.supports(requirement) }
}
