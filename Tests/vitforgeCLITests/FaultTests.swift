import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// Faults a long command must survive with its last checkpoint intact: a write that fails (injected: CI runs as
/// root, so permissions cannot make one fail), a real `ulimit -f`, and an OpenCL device that fails mid-run (the
/// backend's fault hook).
struct FaultTests {
    #if VITFORGE_FAULT_INJECTION
    static let faultHooks = true
    #else
    static let faultHooks = false
    #endif
    static let fashionMNISTPresent = FileManager.default.fileExists(
        atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    static let openCLPresent = (try? vitforge(["devices"]))?.stdout.contains("opencl:") ?? false

    /// A tiny odd-sized ViT on two Fashion-MNIST classes: one epoch is 124 steps of 97 images, a few seconds.
    static func trainArguments(_ folder: TemporaryFolder, out: String, device: String = "cpu") throws -> [String] {
        let config = ViTConfig.timm(imageSize: 28, patchSize: 7, inChannels: 1, classes: 10, embedDim: 14, depth: 2,
                                    heads: 2, mlpRatio: 1.5, qkvBias: true, pooling: .token)
        let configPath = try folder.write("tiny.json", Array(config.jsonString().utf8))
        return ["train", "--config", configPath, "--data", "fashion-mnist", "--classes", "3,8", "--epochs", "1",
                "--batch-size", "97", "--checkpoint-every", "5", "--seed", "3", "--device", device,
                "--out", folder.path(out)]
    }

    /// The step a training checkpoint was written at.
    static func checkpointStep(_ path: String) throws -> Int {
        let json = try #require(SafetensorsFile(path: path).metadata["vitforge.checkpoint"])
        let object = try #require(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        return try #require((object["state"] as? [String: Any])?["step"] as? Int)
    }

    static func temporaryFiles(_ folder: TemporaryFolder) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.url.path).filter { $0.contains(".tmp-") }
    }

    @Test("an injected write failure: one-line error naming the file, the previous checkpoint intact and resumable",
          .enabled(if: faultHooks, "built without -DVITFORGE_FAULT_INJECTION (.ci/run builds with it)"),
          .enabled(if: fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"))
    func injectedWriteFailure() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let uninterrupted = try vitforge(Self.trainArguments(folder, out: "a.safetensors"))
        #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")

        // Checkpoints at steps 5 and 10 are written; the third write (step 15) fails half-way.
        let arguments = try Self.trainArguments(folder, out: "b.safetensors")
        let checkpoint = folder.path("b.safetensors") + ".checkpoint.safetensors"
        let failed = try vitforge(arguments, environment: ["VITFORGE_FAULT_WRITE_AFTER": "2"])
        #expect(failed.status == 1)
        #expect(failed.stderrLines.last == "error: \(checkpoint): write: No space left on device (injected fault)",
                "\(failed.stderr)")
        #expect(try Self.checkpointStep(checkpoint) == 10)
        #expect(try Self.temporaryFiles(folder).isEmpty)

        let resumed = try vitforge(arguments + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let a = try Data(contentsOf: URL(fileURLWithPath: folder.path("a.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: folder.path("b.safetensors")))
        #expect(a == b, "the run resumed after a failed write differs from the uninterrupted one")
    }

    @Test("ulimit -f below a checkpoint's size: \"File too large\" naming the file, not a SIGXFSZ death; the previous checkpoint intact",
          .enabled(if: fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"))
    func fileSizeLimit() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let arguments = try Self.trainArguments(folder, out: "m.safetensors")
        let checkpoint = folder.path("m.safetensors") + ".checkpoint.safetensors"
        let first = try vitforge(arguments + ["--stop-after-steps", "5"])
        #expect(first.status == 130, "\(first.stderr)")
        let size = try #require(FileManager.default.attributesOfItem(atPath: checkpoint)[.size] as? Int)
        #expect(try Self.checkpointStep(checkpoint) == 5)

        // bash's `ulimit -f` counts KiB; half the checkpoint's size.
        let limited = try runProcess("/bin/bash", ["-c", "ulimit -f \(size / 2048); exec \"$0\" \"$@\"",
                                                   vitforgeBinary] + arguments + ["--resume"])
        #expect(limited.status == 1, "\(limited.stderr)")
        #expect(limited.stderrLines.last == "error: \(checkpoint): write: File too large", "\(limited.stderr)")
        #expect(try Self.checkpointStep(checkpoint) == 5)
        #expect(try Self.temporaryFiles(folder).isEmpty)
        let resumed = try vitforge(arguments + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
    }

    @Test("an OpenCL device failing mid-run under auto: one warning, the CPU continues from the last checkpoint",
          .enabled(if: faultHooks, "built without -DVITFORGE_FAULT_INJECTION (.ci/run builds with it)"),
          .enabled(if: fashionMNISTPresent && openCLPresent, "needs Fashion-MNIST and an OpenCL device"))
    func openCLFailureUnderAuto() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let arguments = try Self.trainArguments(folder, out: "m.safetensors", device: "auto")
        let run = try vitforge(arguments, environment: ["VITFORGE_FAULT_OPENCL_AT_STEP": "12"])
        #expect(run.status == 0, "\(run.stderr)")
        let warnings = run.stderrLines.filter { $0.hasPrefix("warning:") }
        #expect(warnings.count == 1 && warnings[0].contains("failed mid-run (")
                && warnings[0].contains("continuing on the CPU backend from the last checkpoint"), "\(run.stderr)")
        #expect(run.stdout.contains("resumed at step 10 from"), "\(run.stdout)")
        _ = try ViTWeights.load(path: folder.path("m.safetensors"))
    }

    @Test("an OpenCL device named explicitly failing mid-run: a clean one-line error, the last checkpoint intact",
          .enabled(if: faultHooks, "built without -DVITFORGE_FAULT_INJECTION (.ci/run builds with it)"),
          .enabled(if: fashionMNISTPresent && openCLPresent, "needs Fashion-MNIST and an OpenCL device"))
    func openCLFailureNamed() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let arguments = try Self.trainArguments(folder, out: "m.safetensors", device: "opencl")
        let run = try vitforge(arguments, environment: ["VITFORGE_FAULT_OPENCL_AT_STEP": "12"])
        #expect(run.status == 1)
        let errors = run.stderrLines.filter { $0.hasPrefix("error: ") }
        #expect(errors.count == 1 && run.stderrLines.last == errors.first
                && errors[0].contains("CL_OUT_OF_RESOURCES (-5)"), "\(run.stderr)")
        #expect(!run.stderr.contains("warning:"))
        #expect(try Self.checkpointStep(folder.path("m.safetensors") + ".checkpoint.safetensors") == 10)
        #expect(!FileManager.default.fileExists(atPath: folder.path("m.safetensors")))
    }
}
