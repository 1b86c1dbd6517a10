import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// `vitforge train` killed with SIGKILL at a random moment and resumed with --resume ends with a model file that is
/// byte-identical to an uninterrupted run's: same weights, bit for bit (the resume guarantee, through the
/// real binary, with shuffling, augmentation, warm-up + cosine and per-epoch evaluation all in play).
struct ResumeTests {
    static let fashionMNISTPresent = FileManager.default.fileExists(
        atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")

    @Test("kill -9 mid-run, --resume: the final model is byte-identical to an uninterrupted run",
          .enabled(if: fashionMNISTPresent, "Debian package dataset-fashion-mnist is not installed"))
    func killAndResume() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // A tiny odd-sized ViT so that the whole run takes seconds.
        let config = ViTConfig.timm(imageSize: 28, patchSize: 7, inChannels: 1, classes: 10, embedDim: 14, depth: 2,
                                    heads: 2, mlpRatio: 1.5, qkvBias: true, pooling: .token)
        let configPath = try folder.write("tiny.json", Array(config.jsonString().utf8))
        func arguments(out: String) -> [String] {
            ["train", "--config", configPath, "--data", "fashion-mnist", "--classes", "3,8", "--epochs", "3",
             "--batch-size", "97", "--checkpoint-every", "7", "--seed", "11", "--device", "cpu",
             "--out", folder.path(out)]
        }

        let uninterrupted = try vitforge(arguments(out: "a.safetensors"))
        #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")

        // Start the same run, wait until its first checkpoint exists, then SIGKILL it after a random extra delay.
        let checkpoint = folder.path("b.safetensors") + ".checkpoint.safetensors"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: vitforgeBinary)
        process.arguments = arguments(out: "b.safetensors")
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: checkpoint) && process.isRunning && Date() < deadline {
            usleep(20_000)
        }
        usleep(UInt32.random(in: 0...400_000))
        let killedMidRun = process.isRunning
        if killedMidRun { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: checkpoint))

        let resumed = try vitforge(arguments(out: "b.safetensors") + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let a = try Data(contentsOf: URL(fileURLWithPath: folder.path("a.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: folder.path("b.safetensors")))
        #expect(a == b, "resumed model differs from the uninterrupted one (killed mid-run: \(killedMidRun))")
        #expect(killedMidRun, "the run finished before it could be killed; the test proved less than it should")
    }
}
