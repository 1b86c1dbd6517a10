import COpenCL
import ViTForgeSupport

public enum OpenCLDeviceType: String, Sendable {
    case gpu, cpu, accelerator, other
}

/// One OpenCL device as the driver describes it; `spec` is how `--device` names it.
public struct OpenCLDeviceInfo: Sendable {
    public let platformIndex: Int
    public let deviceIndex: Int
    public let platformName: String
    public let name: String
    public let vendor: String
    public let type: OpenCLDeviceType
    public let globalMemoryBytes: UInt64
    public let computeUnits: Int
    public let openCLVersion: String
    public let driverVersion: String
    public let supportsFloat64: Bool
    /// CL_DEVICE_LOCAL_MEM_SIZE and CL_DEVICE_MAX_WORK_GROUP_SIZE (the defaults are OpenCL 1.2's minimums, for
    /// descriptions made by hand in tests).
    public var localMemoryBytes: UInt64 = 32 << 10
    public var maxWorkGroupSize: Int = 1

    public var spec: String { "opencl:\(platformIndex).\(deviceIndex)" }

    public var capabilities: DeviceCapabilities {
        DeviceCapabilities(float64: supportsFloat64, localMemoryBytes: Int(clamping: localMemoryBytes),
                           maxWorkGroupSize: maxWorkGroupSize)
    }
}

public enum OpenCLRuntime {
    /// Every device of every platform; throws BackendError.noOpenCLDevice("no OpenCL platform found (is an ICD installed? …)") when there is none.
    public static func devices() throws -> [OpenCLDeviceInfo] {
        let platforms = try platformIDs()
        var result: [OpenCLDeviceInfo] = []
        for (platformIndex, platform) in platforms.enumerated() {
            let platformName = try platformString(platform, cl_platform_info(CL_PLATFORM_NAME))
            for (deviceIndex, device) in try deviceIDs(platform).enumerated() {
                result.append(try describe(device, platformIndex: platformIndex, deviceIndex: deviceIndex,
                                           platformName: platformName))
            }
        }
        if result.isEmpty {
            throw BackendError.noOpenCLDevice(
                "no OpenCL device found on \(platforms.count) platform(s) (PoCL reports none when its cache folder "
                    + "is not writable: set POCL_CACHE_DIR or XDG_CACHE_HOME to a writable folder)")
        }
        return result
    }

    // MARK: Internals shared with the backend

    static func platformIDs() throws -> [cl_platform_id?] {
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        // ocl-icd answers CL_PLATFORM_NOT_FOUND_KHR (-1001) when no ICD file is installed.
        if status == CL_PLATFORM_NOT_FOUND_KHR || (status == CL_SUCCESS && count == 0) {
            throw BackendError.noOpenCLDevice(
                "no OpenCL platform found (is an ICD installed? e.g. pocl-opencl-icd, or the GPU vendor's OpenCL "
                    + "driver; /etc/OpenCL/vendors/ lists the installed ones)")
        }
        try checkCL(status, "clGetPlatformIDs")
        var platforms = [cl_platform_id?](repeating: nil, count: Int(count))
        try checkCL(clGetPlatformIDs(count, &platforms, nil), "clGetPlatformIDs")
        return platforms
    }

    static func deviceIDs(_ platform: cl_platform_id?) throws -> [cl_device_id?] {
        var count: cl_uint = 0
        let status = clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &count)
        if status == CL_DEVICE_NOT_FOUND { return [] }
        try checkCL(status, "clGetDeviceIDs")
        var devices = [cl_device_id?](repeating: nil, count: Int(count))
        try checkCL(clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), count, &devices, nil),
                    "clGetDeviceIDs")
        return devices
    }

    /// The `cl_device_id` behind a description, checked against its name so that a changed device list (a driver
    /// installed or removed since enumeration) is an error rather than a different device.
    static func deviceID(for info: OpenCLDeviceInfo) throws -> (platform: cl_platform_id?, device: cl_device_id?) {
        let platforms = try platformIDs()
        guard info.platformIndex >= 0, info.platformIndex < platforms.count else {
            throw BackendError.invalidDevice("\(info.spec): no OpenCL platform \(info.platformIndex)")
        }
        let platform = platforms[info.platformIndex]
        let devices = try deviceIDs(platform)
        guard info.deviceIndex >= 0, info.deviceIndex < devices.count,
              try deviceString(devices[info.deviceIndex], cl_device_info(CL_DEVICE_NAME)) == info.name
        else {
            throw BackendError.invalidDevice("\(info.spec): no device named \"\(info.name)\" there any more")
        }
        return (platform, devices[info.deviceIndex])
    }

    static func describe(_ device: cl_device_id?, platformIndex: Int, deviceIndex: Int,
                         platformName: String) throws -> OpenCLDeviceInfo {
        let typeBits: cl_device_type = try deviceValue(device, cl_device_info(CL_DEVICE_TYPE))
        let type: OpenCLDeviceType
        if typeBits & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 {
            type = .gpu
        } else if typeBits & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 {
            type = .cpu
        } else if typeBits & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 {
            type = .accelerator
        } else {
            type = .other
        }
        let extensions = try deviceString(device, cl_device_info(CL_DEVICE_EXTENSIONS))
        let computeUnits: cl_uint = try deviceValue(device, cl_device_info(CL_DEVICE_MAX_COMPUTE_UNITS))
        return OpenCLDeviceInfo(
            platformIndex: platformIndex, deviceIndex: deviceIndex, platformName: platformName,
            name: try deviceString(device, cl_device_info(CL_DEVICE_NAME)),
            vendor: try deviceString(device, cl_device_info(CL_DEVICE_VENDOR)),
            type: type,
            globalMemoryBytes: try deviceValue(device, cl_device_info(CL_DEVICE_GLOBAL_MEM_SIZE)),
            computeUnits: Int(computeUnits),
            openCLVersion: try deviceString(device, cl_device_info(CL_DEVICE_VERSION)),
            driverVersion: try deviceString(device, cl_device_info(CL_DRIVER_VERSION)),
            supportsFloat64: extensions.split(separator: " ").contains("cl_khr_fp64"),
            localMemoryBytes: try deviceValue(device, cl_device_info(CL_DEVICE_LOCAL_MEM_SIZE)),
            maxWorkGroupSize: try deviceValue(device, cl_device_info(CL_DEVICE_MAX_WORK_GROUP_SIZE)))
    }

    static func platformString(_ platform: cl_platform_id?, _ param: cl_platform_info) throws -> String {
        var size = 0
        try checkCL(clGetPlatformInfo(platform, param, 0, nil, &size), "clGetPlatformInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try checkCL(clGetPlatformInfo(platform, param, size, &bytes, nil), "clGetPlatformInfo")
        return trimmedString(bytes)
    }

    static func deviceString(_ device: cl_device_id?, _ param: cl_device_info) throws -> String {
        var size = 0
        try checkCL(clGetDeviceInfo(device, param, 0, nil, &size), "clGetDeviceInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try checkCL(clGetDeviceInfo(device, param, size, &bytes, nil), "clGetDeviceInfo")
        return trimmedString(bytes)
    }

    /// A fixed-size query. The driver writes at most `MemoryLayout<T>.size` bytes (it refuses a smaller buffer with
    /// CL_INVALID_VALUE), and the size it reports must be exactly T's: a T of the wrong width for `param` (cl_uint
    /// against size_t, size_t against cl_ulong) is an error here rather than a value with bytes missing.
    static func deviceValue<T: FixedWidthInteger>(_ device: cl_device_id?, _ param: cl_device_info) throws -> T {
        var value: T = 0
        var size = 0
        try checkCL(clGetDeviceInfo(device, param, MemoryLayout<T>.size, &value, &size), "clGetDeviceInfo")
        guard size == MemoryLayout<T>.size else {
            throw BackendError.openCL(call: "clGetDeviceInfo(\(param)): \(size) bytes, not \(MemoryLayout<T>.size)",
                                      code: CL_INVALID_VALUE)
        }
        return value
    }

    /// Drivers pad some strings with spaces (NVIDIA's device names, PoCL's versions).
    private static func trimmedString(_ bytes: [CChar]) -> String {
        let text = bytes.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" }
        return String(text.drop(while: isBlank).reversed().drop(while: isBlank).reversed())
    }
}

/// Throws `BackendError.openCL` naming `call` unless `status` is CL_SUCCESS.
@inline(__always)
func checkCL(_ status: cl_int, _ call: String) throws {
    if status != CL_SUCCESS { throw BackendError.openCL(call: call, code: status) }
    if FaultInjection.openCLCallShouldFail() { throw BackendError.openCL(call: call, code: CL_OUT_OF_RESOURCES) }
}
