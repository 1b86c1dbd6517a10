import Testing
@testable import ViTForgeDevice

/// `--device` parsing and the rules for which device `auto` and plain `opencl` pick.
struct DeviceSelectionTests {
    @Test("device strings parse", arguments: [
        ("auto", DeviceRequest.auto), ("cpu", .cpu), ("CPU", .cpu), ("opencl", .openCL(platform: nil, device: nil)),
        ("opencl:0.0", .openCL(platform: 0, device: 0)), ("opencl:2.13", .openCL(platform: 2, device: 13)),
    ])
    func parses(text: String, expected: DeviceRequest) throws {
        #expect(try DeviceRequest(parsing: text) == expected)
    }

    @Test("bad device strings give one line naming the string",
          arguments: ["", "gpu0", "opencl:", "opencl:1", "opencl:a.b", "opencl:-1.0", "opencl:0.0.0", "cuda"])
    func rejects(text: String) {
        do {
            _ = try DeviceRequest(parsing: text)
            Issue.record("'\(text)' was accepted")
        } catch {
            let message = "\(error)"
            #expect(message.contains("'\(text)'"))
            #expect(!message.contains("\n"))
        }
    }

    static func device(_ index: Int, _ type: OpenCLDeviceType, memoryGiB: UInt64, float64: Bool = true)
        -> OpenCLDeviceInfo
    {
        OpenCLDeviceInfo(platformIndex: 0, deviceIndex: index, platformName: "p", name: "d\(index)", vendor: "v",
                         type: type, globalMemoryBytes: memoryGiB << 30, computeUnits: 2, openCLVersion: "OpenCL 3.0",
                         driverVersion: "1", supportsFloat64: float64)
    }

    @Test("capabilities answer supports(_:), and a set without float64 is refused in one phrase")
    func capabilitySets() {
        let noFloat64 = DeviceCapabilities(float64: false, localMemoryBytes: 48 << 10, maxWorkGroupSize: 256)
        #expect(!noFloat64.supports(.float64))
        #expect(noFloat64.supports(.localMemory(bytes: 48 << 10)) && !noFloat64.supports(.localMemory(bytes: 64 << 10)))
        #expect(noFloat64.supports(.workGroupSize(256)) && !noFloat64.supports(.workGroupSize(512)))
        #expect(noFloat64.unmet([.float64, .workGroupSize(1024)]) == [.float64, .workGroupSize(1024)])
        #expect(DeviceSelection.refusal(noFloat64) == "lacks float64 (cl_khr_fp64), which training needs")
        #expect(DeviceSelection.refusal(.cpu) == nil)
        #expect(CPUBackend().supports(.float64))
    }

    @Test("a GPU without float64: auto skips it with one warning, naming it explicitly is a one-line error")
    func unsuitableGPU() throws {
        let noFloat64 = Self.device(3, .gpu, memoryGiB: 80, float64: false), small = Self.device(4, .gpu, memoryGiB: 8)
        #expect(DeviceSelection.autoChoice(from: [noFloat64, small])?.deviceIndex == 4)
        #expect(DeviceSelection.autoChoice(from: [noFloat64]) == nil)
        DeviceSelection.warned = false
        var warnings: [String] = []
        let fallback = try DeviceSelection.makeBackend(.auto, listDevices: { [noFloat64] }, warn: { warnings.append($0) })
        #expect(fallback.kind == .cpu)
        #expect(warnings == ["OpenCL GPU opencl:0.3 (d3) lacks float64 (cl_khr_fp64), which training needs, "
                                + "using the CPU backend"])
        for request in [DeviceRequest.gpu, .openCL(platform: nil, device: nil), .openCL(platform: 0, device: 3)] {
            do {
                _ = try DeviceSelection.makeBackend(request, listDevices: { [noFloat64] })
                Issue.record("--device \(request) accepted a device without float64")
            } catch {
                #expect(error as? BackendError == .unsupported(
                    "--device \(request): opencl:0.3 (d3) lacks float64 (cl_khr_fp64), which training needs; "
                        + "use --device cpu"))
            }
        }
    }

    @Test("auto never picks an OpenCL CPU device (PoCL); it picks the GPU with the most memory")
    func autoChoice() {
        let pocl = Self.device(0, .cpu, memoryGiB: 64)
        #expect(DeviceSelection.autoChoice(from: [pocl]) == nil)
        let small = Self.device(1, .gpu, memoryGiB: 8), large = Self.device(2, .gpu, memoryGiB: 80)
        #expect(DeviceSelection.autoChoice(from: [pocl, small, large])?.deviceIndex == 2)
        // Plain `opencl` was asked for explicitly: a CPU device is acceptable when there is no GPU.
        #expect(DeviceSelection.explicitChoice(from: [pocl])?.deviceIndex == 0)
        #expect(DeviceSelection.explicitChoice(from: [pocl, small])?.deviceIndex == 1)
    }

    @Test("a device that does not exist fails with one line listing what exists")
    func missingDevice() {
        do {
            _ = try DeviceSelection.makeBackend(.openCL(platform: 9, device: 9))
            Issue.record("opencl:9.9 was accepted")
        } catch {
            #expect("\(error)".contains("opencl:9.9"))
            #expect(!"\(error)".contains("\n"))
        }
    }
}

/// The warning `devices` and `bench` print when OpenBLAS runs kernels older than the CPU supports.
struct BLASCoreWarningTests {
    static let avx512: Set<String> = ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"]

    @Test("Haswell kernels forced on an AVX-512 CPU warn and name OPENBLAS_CORETYPE; matching cores do not warn")
    func coreWarning() throws {
        let forced = try #require(OpenBLAS.coreWarning(core: "Haswell", cpuFlags: Self.avx512, forcedCore: "Haswell"))
        #expect(forced.contains("AVX-512") && forced.contains("OPENBLAS_CORETYPE=Haswell"))
        let unknown = try #require(OpenBLAS.coreWarning(core: "Zen", cpuFlags: Self.avx512, forcedCore: nil))
        #expect(unknown.contains("does not know the CPU"))
        #expect(OpenBLAS.coreWarning(core: "Cooperlake", cpuFlags: Self.avx512, forcedCore: nil) == nil)
        #expect(OpenBLAS.coreWarning(core: "Haswell", cpuFlags: ["avx", "avx2", "fma"], forcedCore: nil) == nil)
        #expect(OpenBLAS.coreWarning(core: "Zen", cpuFlags: ["avx", "avx2", "fma"], forcedCore: "Zen") == nil)
    }
}
