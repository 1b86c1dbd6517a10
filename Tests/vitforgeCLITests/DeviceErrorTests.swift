import Foundation
import Testing
import ViTForgeDevice
import ViTForgeTestBasics

/// Device errors end as one line on stderr and a non-zero exit, through the real binary.
struct DeviceErrorTests {
    static let openCLPresent = ((try? OpenCLRuntime.devices()) ?? []).isEmpty == false

    func expectOneLineFailure(_ result: CommandResult, mentioning text: String) {
        #expect(result.status != 0)
        #expect(result.stderrLines.count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains(text), "stderr: \(result.stderr)")
    }

    @Test("--device with a bad value")
    func badDeviceFlag() throws {
        expectOneLineFailure(try vitforge(["devices", "--device", "opencl:x"]), mentioning: "'opencl:x'")
    }

    @Test("VITFORGE_DEVICE with a bad value")
    func badDeviceEnvironment() throws {
        expectOneLineFailure(try vitforge(["devices"], environment: ["VITFORGE_DEVICE": "tpu"]),
                             mentioning: "VITFORGE_DEVICE")
    }

    @Test("VITFORGE_GEMM with a bad value, in a command that lists devices and in one that measures")
    func badGemmEnvironment() throws {
        for arguments in [["devices"], ["bench", "--peak"]] {
            expectOneLineFailure(try vitforge(arguments, environment: ["VITFORGE_GEMM": "mkl"]),
                                 mentioning: "VITFORGE_GEMM=mkl: unknown GEMM library")
        }
    }

    @Test("an OpenCL device that does not exist")
    func missingDevice() throws {
        expectOneLineFailure(try vitforge(["devices", "--check", "--device", "opencl:7.3"]), mentioning: "opencl:7.3")
    }

    /// VITFORGE_KERNEL_DIR makes the backend compile these sources instead of the embedded ones.
    @Test("a kernel that does not compile, on a device named explicitly",
          .enabled(if: openCLPresent, "no OpenCL device on this machine (CI has PoCL)"))
    func kernelBuildFailure() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        _ = try folder.write("broken.cl", Array("__kernel void broken(__global float* x) { x[0] = nowhere; }\n".utf8))
        let result = try vitforge(["devices", "--check", "--device", "opencl"],
                                  environment: ["VITFORGE_KERNEL_DIR": folder.url.path,
                                                "VITFORGE_CACHE_DIR": folder.path("cache")])
        expectOneLineFailure(result, mentioning: "OpenCL kernel build failed")
        #expect(result.stderr.contains("nowhere"))
    }
}
