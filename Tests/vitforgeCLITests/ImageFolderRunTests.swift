import CImageDecode
import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// `vitforge train` on an ImageFolder, which is streamed (decoded per batch by loader threads): a run stopped
/// mid-epoch and resumed ends with the uninterrupted run's model, byte for byte, and a 2-rank run (each rank
/// decoding its share of every batch) agrees with one process.
struct ImageFolderRunTests {
    /// A tiny RGB ViT: a step takes milliseconds.
    static let config = ViTConfig.timm(imageSize: 28, patchSize: 7, inChannels: 3, classes: 3, embedDim: 14, depth: 2,
                                       heads: 2, mlpRatio: 1.5, qkvBias: false, pooling: .token)

    /// 3 classes, 41 images: RGB JPEGs big enough for DCT-scaled decoding and grey PNGs, odd sizes; a bright
    /// class-dependent band so the loss has something to learn.
    static func folder(_ folder: TemporaryFolder) throws -> String {
        let root = folder.path("photos")
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(state >> 33)
        }
        for index in 0..<41 {
            let label = index % 3
            let directory = root + "/class\(label)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let (width, height) = index % 2 == 0 ? (131, 97) : (29, 31)
            let channels = index % 2 == 0 ? 3 : 1
            var pixels: [UInt8] = []
            for y in 0..<height {
                for _ in 0..<(width * channels) {
                    let inBand = y * 3 / height == label
                    pixels.append(UInt8(truncatingIfNeeded: next() % 100 + (inBand ? 150 : 0)))
                }
            }
            var message = [CChar](repeating: 0, count: 256)
            let status = index % 2 == 0
                ? vf_encode_jpeg(directory + "/\(index).jpg", pixels, Int32(width), Int32(height), 3, 90, &message, 256)
                : vf_encode_png(directory + "/\(index).png", pixels, Int32(width), Int32(height), 1, &message, 256)
            #expect(status == 0, "\(String(cString: message))")
        }
        return root
    }

    @Test("train on a streamed folder stopped mid-epoch, --resume: the final model is byte-identical")
    func stopAndResume() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.folder(folder)
        let configPath = try folder.write("tiny.json", Array(Self.config.jsonString().utf8))
        // 41 images in batches of 9: 5 steps per epoch; the stop at step 7 is in the middle of epoch 2.
        func arguments(_ out: String) -> [String] {
            ["train", "--config", configPath, "--data", data, "--epochs", "2", "--batch-size", "9",
             "--checkpoint-every", "2", "--seed", "5", "--device", "cpu", "--loader-threads", "2",
             "--out", folder.path(out)]
        }
        let uninterrupted = try vitforge(arguments("a.safetensors"))
        #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")
        let stopped = try vitforge(arguments("b.safetensors") + ["--stop-after-steps", "7"])
        #expect(stopped.status == 130, "\(stopped.stderr)")
        let resumed = try vitforge(arguments("b.safetensors") + ["--resume", "--loader-threads", "1"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("resumed at step 7"), "\(resumed.stdout)")
        let a = try Data(contentsOf: URL(fileURLWithPath: folder.path("a.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: folder.path("b.safetensors")))
        #expect(a == b, "resumed model differs from the uninterrupted one")
    }
}

/// The MPI share test on a folder (CI's mpi-test stage): each rank decodes only its share of every batch.
@Suite(.serialized, .enabled(if: MPIRun.available, MPIRun.unavailableReason))
struct ImageFolderMPITests {
    @Test("train on a streamed folder: 2 ranks end with the weights of 1 process with the same global batch (1e-5)")
    func twoRanksMatchOneProcess() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try ImageFolderRunTests.folder(folder)
        let configPath = try folder.write("tiny.json", Array(ImageFolderRunTests.config.jsonString().utf8))
        func arguments(_ out: String) -> [String] {
            ["train", "--config", configPath, "--data", data, "--epochs", "2", "--batch-size", "9",
             "--clip-grad", "1", "--seed", "7", "--device", "cpu", "--out", folder.path(out)]
        }
        let single = try MPIRun.run(ranks: 1, arguments("one.safetensors"))
        #expect(single.status == 0, "\(single.stderr)")
        let parallel = try MPIRun.run(ranks: 2, arguments("two.safetensors"))
        #expect(parallel.status == 0, "\(parallel.stderr)")
        try MPIRunTests.expectClose(folder.path("two.safetensors"), folder.path("one.safetensors"), tolerance: 1e-5)
    }
}
