import Foundation
import Testing
import ViTForgeFormats
import ViTForgeModel
import ViTForgeTestBasics

/// `mpirun -np 2 vitforge …` against one process on the same global batches (the tests). Needs the binary
/// built with the MPI package trait and Open MPI's `mpirun`; CI builds the whole package with the trait once and runs
/// them in their own stage (`.ci/run`, stage mpi-test). 2 ranks sum each step's gradients in another order than one process, so the weights agree to
/// rounding (1e-5 relative), not bit for bit; a resumed 2-rank run must be bit-identical to an uninterrupted one.
@Suite(.serialized, .enabled(if: MPIRun.available, MPIRun.unavailableReason))
struct MPIRunTests {
    /// A tiny odd-sized ViT: a step takes milliseconds, so the runs are dominated by MPI start-up. Without a qkv
    /// bias: the key bias's gradient is zero in exact arithmetic (softmax ignores a constant added to a row of
    /// scores), so it is rounding noise, which AdamW's normalised update turns into steps of full size; its values
    /// then depend on the summation order and no data-parallel run could match one process there to 1e-5.
    static let config = ViTConfig.timm(imageSize: 28, patchSize: 7, inChannels: 1, classes: 4, embedDim: 14,
                                       depth: 2, heads: 2, mlpRatio: 1.5, qkvBias: false, pooling: .token)
    /// The kill test's model: a little wider, so that the run outlasts the moments between its first checkpoint and
    /// the kill.
    static let killConfig = ViTConfig.timm(imageSize: 28, patchSize: 7, inChannels: 1, classes: 4, embedDim: 22,
                                           depth: 2, heads: 2, mlpRatio: 2, qkvBias: true, pooling: .token)

    /// An IDX folder of `train` training and 60 test images: seeded noise plus a class-dependent bright square, so
    /// the loss has something to learn.
    static func data(_ folder: TemporaryFolder, train: Int) throws -> String {
        let path = folder.path("idx")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        func split(_ name: String, count: Int) throws {
            var pixels: [UInt8] = [], labels: [UInt8] = []
            for _ in 0..<count {
                let label = Int(next() % 4)
                labels.append(UInt8(label))
                for y in 0..<28 {
                    for x in 0..<28 {
                        let inSquare = (y / 14) == label / 2 && (x / 14) == label % 2
                        pixels.append(UInt8(truncatingIfNeeded: Int(next() % 128) + (inSquare ? 120 : 0)))
                    }
                }
            }
            func header(_ magic: UInt32, _ dimensions: [UInt32]) -> [UInt8] {
                ([magic] + dimensions).flatMap { value in withUnsafeBytes(of: value.bigEndian) { Array($0) } }
            }
            try Data(header(0x0000_0803, [UInt32(count), 28, 28]) + pixels)
                .write(to: URL(fileURLWithPath: path + "/\(name)-images-idx3-ubyte"))
            try Data(header(0x0000_0801, [UInt32(count)]) + labels)
                .write(to: URL(fileURLWithPath: path + "/\(name)-labels-idx1-ubyte"))
        }
        try split("train", count: train)
        try split("t10k", count: 60)
        return path
    }

    static func tensors(_ path: String) throws -> [String: [Float]] {
        try ViTWeights.load(path: path, heads: nil).namedTensors().reduce(into: [:]) { result, tensor in
            if case let .float32(values) = tensor.values { result[tensor.name] = values }
        }
    }

    /// Every tensor of `a` within `tolerance` (relative L2) of `b`'s, and the same tensor names.
    static func expectClose(_ a: String, _ b: String, tolerance: Double) throws {
        let (left, right) = (try tensors(a), try tensors(b))
        #expect(left.keys.sorted() == right.keys.sorted(), "different tensors (another pruning plan?)")
        var largest = 0.0
        for (name, reference) in right {
            let error = relativeError(left[name] ?? [], reference)
            largest = max(largest, error)
            #expect(error < tolerance, "\(name): relative error \(error)")
        }
        #expect(largest > 0, "2 ranks gave bit-identical weights to 1 process: was it really split?")
    }

    @Test("train: 20 steps on 2 ranks end with the weights of 1 process with the same global batch (1e-5)")
    func trainMatchesOneProcess() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.data(folder, train: 230)
        let configPath = try folder.write("tiny.json", Array(Self.config.jsonString().utf8))
        // 230 images in batches of 23: 10 steps per epoch, 2 epochs; each rank gets 12 or 11 images per step.
        func arguments(_ out: String) -> [String] {
            ["train", "--config", configPath, "--data", data, "--epochs", "2", "--batch-size", "23",
             "--clip-grad", "1", "--label-smoothing", "0.1", "--seed", "7", "--device", "cpu",
             "--out", folder.path(out), "--log", folder.path(out + ".json")]
        }
        let single = try MPIRun.run(ranks: 1, arguments("one.safetensors"))
        #expect(single.status == 0, "\(single.stderr)")
        let parallel = try MPIRun.run(ranks: 2, arguments("two.safetensors"))
        #expect(parallel.status == 0, "\(parallel.stderr)")
        try Self.expectClose(folder.path("two.safetensors"), folder.path("one.safetensors"), tolerance: 1e-5)
        #expect(parallel.stdout.components(separatedBy: "wrote ").count == 2, "rank 0 alone prints: \(parallel.stdout)")
        let history = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: folder.path("two.safetensors.json")))) as? [String: Any]
        let epochs = history?["epochs"] as? [[String: Any]] ?? []
        #expect(epochs.count == 2 && epochs.last?["step"] as? Int == 20)
    }

    @Test("prune --method vbp with fine-tuning: 2 ranks end with the pruned model of 1 process (1e-5)")
    func vbpMatchesOneProcess() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.data(folder, train: 230)
        let model = folder.path("model.safetensors")
        try ViTWeights.initialized(config: Self.config, seed: 3).save(to: model)
        func arguments(_ out: String) -> [String] {
            // --no-compensate: the subject is data-parallel fine-tuning after VBP's own cut.
            ["prune", "--model", model, "--data", data, "--method", "vbp", "--keep-mlp", "0.5", "--no-compensate",
             "--calib-images", "101", "--finetune-epochs", "2", "--distill", "--batch-size", "23",
             "--finetune-lr", "1e-3", "--seed", "7", "--device", "cpu", "--out", folder.path(out),
             "--report", folder.path(out + ".json")]
        }
        let single = try MPIRun.run(ranks: 1, arguments("one.safetensors"))
        #expect(single.status == 0, "\(single.stderr)")
        let parallel = try MPIRun.run(ranks: 2, arguments("two.safetensors"))
        #expect(parallel.status == 0, "\(parallel.stderr)")
        try Self.expectClose(folder.path("two.safetensors"), folder.path("one.safetensors"), tolerance: 1e-5)
        #expect(FileManager.default.fileExists(atPath: folder.path("two.safetensors.json")))
    }

    @Test("a 2-rank train killed mid-run resumes on 2 ranks to the uninterrupted run's weights, bit for bit")
    func killedRunResumes() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.data(folder, train: 1150)
        let configPath = try folder.write("small.json", Array(Self.killConfig.jsonString().utf8))
        // 50 steps per epoch, 200 in all: killed soon after the first checkpoint (step 7), most of the run is left.
        func arguments(_ out: String) -> [String] {
            ["train", "--config", configPath, "--data", data, "--epochs", "4", "--batch-size", "23",
             "--checkpoint-every", "7", "--seed", "5", "--device", "cpu", "--out", folder.path(out)]
        }
        let uninterrupted = try MPIRun.run(ranks: 2, arguments("a.safetensors"))
        #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")

        // The same run, both ranks killed with SIGKILL (a lost node) once a checkpoint exists; mpirun then ends the
        // job. (Not SIGTERM to mpirun: a child of Foundation's Process starts with SIGTERM blocked.)
        let checkpoint = folder.path("b.safetensors") + ".checkpoint.safetensors"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: MPIRun.mpirun)
        process.arguments = MPIRun.arguments(ranks: 2) + arguments("b.safetensors")
        process.environment = MPIRun.environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: checkpoint) && process.isRunning && Date() < deadline {
            usleep(10_000)
        }
        usleep(UInt32.random(in: 0...50_000))
        let ranks = MPIRun.descendants(of: process.processIdentifier, named: "vitforge")
        let killedMidRun = process.isRunning && ranks.count == 2
        for rank in ranks { kill(rank, SIGKILL) }
        process.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: checkpoint))
        #expect(!FileManager.default.fileExists(atPath: folder.path("b.safetensors")), "the killed run finished")

        let resumed = try MPIRun.run(ranks: 2, arguments("b.safetensors") + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Self.tensors(folder.path("b.safetensors")) == Self.tensors(folder.path("a.safetensors")),
                "resumed 2-rank model differs from the uninterrupted one")
        #expect(killedMidRun, "the run finished before it could be killed; the test proved less than it should")
    }
}

/// Launching an MPI build of the binary under Open MPI's mpirun: this test run's own binary when it was built with
/// the MPI package trait (as CI builds it), else the one `VITFORGE_MPI_BINARY` names.
enum MPIRun {
    static let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    } ?? "mpirun"

    static let binary: String? = {
        #if MPI
        return vitforgeBinary
        #else
        return ProcessInfo.processInfo.environment["VITFORGE_MPI_BINARY"].flatMap { path in
            FileManager.default.isExecutableFile(atPath: path) ? path : nil
        }
        #endif
    }()

    static var available: Bool { binary != nil && FileManager.default.isExecutableFile(atPath: mpirun) }

    static var unavailableReason: Comment {
        binary == nil ? "no MPI build: build with --traits MPI, or set VITFORGE_MPI_BINARY to such a vitforge"
            : "mpirun (Debian: openmpi-bin) is not installed"
    }

    /// One OpenBLAS thread per rank (the ranks share the cores); no single-copy shared memory, which containers
    /// without ptrace permission refuse.
    static var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
        environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        environment.removeValue(forKey: "VITFORGE_DEVICE")
        return environment
    }

    static func arguments(ranks: Int) -> [String] {
        ["--allow-run-as-root", "--oversubscribe", "-np", String(ranks), "-x", "OPENBLAS_NUM_THREADS", binary ?? ""]
    }

    /// Processes below `root` (children, grandchildren, …) whose command name is `name`, from /proc.
    static func descendants(of root: Int32, named name: String) -> [Int32] {
        var parents: [Int32: (parent: Int32, name: String)] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { continue }
            // "pid (comm) state ppid …": the name may hold spaces and parentheses, so split after the last ")".
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let parent = Int32(fields[1]) else { continue }
            parents[pid] = (parent, String(stat[stat.index(after: open) ..< close]))
        }
        func isBelowRoot(_ pid: Int32) -> Bool {
            var current = pid
            for _ in 0..<16 {
                guard let parent = parents[current]?.parent else { return false }
                if parent == root { return true }
                current = parent
            }
            return false
        }
        return parents.filter { $0.value.name == name && isBelowRoot($0.key) }.map(\.key).sorted()
    }

    static func run(ranks: Int, _ arguments: [String]) throws -> CommandResult {
        try runProcess(mpirun, Self.arguments(ranks: ranks) + arguments, environment: environment)
    }
}
