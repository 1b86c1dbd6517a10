import Foundation
import Testing
import ViTForgeDevice
import ViTForgeModel
import ViTForgePrune
import ViTForgeTestBasics

/// Every rough edge a new user hit (issue 25), one test per row of its table: the exact error line, the exit code,
/// no backtrace, and every input file byte-for-byte unchanged (sha256 before and after). Tiny IDX data written
/// into the test's folder keeps each run under a second.
@Suite(.serialized)
struct RoughEdgeTests {
    static let model = fixture("fm-vit-c.safetensors")

    /// A folder of IDX files: `train` and `test` images of 28×28 grey pixels, labels `label(i)`.
    static func idxData(_ folder: TemporaryFolder, name: String = "idx", train: Int = 37, test: Int = 13,
                        label: (Int) -> Int = { $0 % 10 }) throws -> String {
        let path = folder.path(name)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        func bigEndian(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
        for (split, count) in [("train", train), ("t10k", test)] {
            var images = bigEndian(0x803) + bigEndian(UInt32(count)) + bigEndian(28) + bigEndian(28)
            for index in 0..<count * 28 * 28 { images.append(UInt8((index * 37 + 11) % 251)) }
            let labels = bigEndian(0x801) + bigEndian(UInt32(count)) + (0..<count).map { UInt8(label($0)) }
            try Data(images).write(to: URL(fileURLWithPath: "\(path)/\(split)-images-idx3-ubyte"))
            try Data(labels).write(to: URL(fileURLWithPath: "\(path)/\(split)-labels-idx1-ubyte"))
        }
        return path
    }

    /// sha256 of every regular file under `paths` (files or folders), by path.
    static func digests(_ paths: [String]) throws -> [String: String] {
        var files: [String] = []
        for path in paths {
            var folder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &folder) else { continue }
            if folder.boolValue {
                files += (FileManager.default.subpaths(atPath: path) ?? []).map { "\(path)/\($0)" }
                    .filter { !((try? FileManager.default.attributesOfItem(atPath: $0)[.type] as? FileAttributeType)
                        == .typeDirectory) }
            } else {
                files.append(path)
            }
        }
        var result: [String: String] = [:]
        for file in files {
            let run = try runProcess("/usr/bin/sha256sum", [file])
            result[file] = String(run.stdout.prefix(64))
        }
        return result
    }

    /// Runs `arguments` and checks what every refusal must be: exit `status`, exactly `line` as the only stderr
    /// line, no backtrace, the `inputs` unchanged.
    static func expectRefusal(_ arguments: [String], inputs: [String], status: Int32 = 1, line: String,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try digests(inputs)
        let result = try vitforge(arguments)
        #expect(result.status == status, "\(arguments): status \(result.status), \(result.stderr)",
                sourceLocation: sourceLocation)
        #expect(result.stderrLines == [Substring(line)], "\(arguments)", sourceLocation: sourceLocation)
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump")
                && !result.stderr.contains("backtrace"), sourceLocation: sourceLocation)
        #expect(try digests(inputs) == before, "an input changed", sourceLocation: sourceLocation)
        #expect(!before.isEmpty, "no input files hashed", sourceLocation: sourceLocation)
    }

    // MARK: inputs are sacred

    @Test("prune --out equal to --model (same path, ./ path, symlink): refused before any work, model unchanged",
          arguments: ["same", "dot", "link"])
    func pruneOverModel(spelling: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = folder.path("m.safetensors")
        try FileManager.default.copyItem(atPath: Self.model, toPath: model)
        let data = try Self.idxData(folder)
        var out = model
        if spelling == "dot" { out = folder.url.path + "/./m.safetensors" }
        if spelling == "link" {
            out = folder.path("link.safetensors")
            try FileManager.default.createSymbolicLink(atPath: out, withDestinationPath: model)
        }
        try Self.expectRefusal(
            ["prune", "--model", model, "--heads", "2", "--data", data, "--keep-mlp", "0.5", "--out", out,
             "--device", "cpu"],
            inputs: [model, data],
            line: "error: --out \(out) is the same file as --model \(model); refusing to overwrite an input "
                + "(choose another --out)")
    }

    /// Every command that writes: its output flag pointed at one of its inputs.
    @Test("every command refuses an output that is one of its inputs",
          arguments: ["train-init", "train-teacher", "train-log", "eval", "infer", "grad", "export", "bench",
                      "report", "prune-report", "prune-html", "prune-data"])
    func everyCommandOverInput(command: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = folder.path("m.safetensors")
        try FileManager.default.copyItem(atPath: Self.model, toPath: model)
        let input = folder.path("ref.safetensors")
        try FileManager.default.copyItem(atPath: fixture("fm-vit-c-ref.safetensors"), toPath: input)
        let json = try folder.write("r.json", Array("{}".utf8))
        let data = try Self.idxData(folder)
        let out = folder.path("out.safetensors")
        let prune = ["prune", "--model", model, "--heads", "2", "--data", data, "--keep-mlp", "0.5", "--device", "cpu"]
        let cases: [String: ([String], String, String, String)] = [
            "train-init": (["train", "--init", model, "--heads", "2", "--data", data, "--out", model], "--out", "--init", model),
            "train-teacher": (["train", "--teacher", model, "--data", data, "--out", model], "--out", "--teacher", model),
            "train-log": (["train", "--init", model, "--data", data, "--out", out, "--log", model], "--log", "--init", model),
            "eval": (["eval", "--model", model, "--json", model], "--json", "--model", model),
            "infer": (["infer", "--model", model, "--input", input, "--out", input], "--out", "--input", input),
            "grad": (["grad", "--model", model, "--input", input, "--out", model], "--out", "--model", model),
            "export": (["export", "--model", model, "--out", model], "--out", "--model", model),
            "bench": (["bench", "--model", model, "--json", model], "--json", "--model", model),
            "report": (["report", json, "--html", json], "--html", "report", json),
            "prune-report": (prune + ["--out", out, "--report", model], "--report", "--model", model),
            "prune-html": (prune + ["--out", out, "--html", model], "--html", "--model", model),
            "prune-data": (prune + ["--out", out, "--report", data + "/train-labels-idx1-ubyte"], "--report", "--data", data),
        ]
        let (arguments, outFlag, inFlag, path) = try #require(cases[command])
        let inputPath = inFlag == "--data" ? data : path
        let written = inFlag == "--data" ? data + "/train-labels-idx1-ubyte" : path
        // --data is a folder: the output inside it is not the folder itself but a file of it.
        let line = inFlag == "--data"
            ? "error: --report \(written) is inside --data \(data); refusing to overwrite an input (choose another "
                + "--report)"
            : "error: \(outFlag) \(written) is the same file as \(inFlag) \(inputPath); refusing to overwrite an "
                + "input (choose another \(outFlag))"
        try Self.expectRefusal(arguments, inputs: [model, input, json, data], line: line)
    }

    @Test("--out in a folder that does not exist: refused before any work")
    func outInMissingFolder() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.idxData(folder)
        let out = folder.path("missing/p.safetensors")
        try Self.expectRefusal(
            ["prune", "--model", Self.model, "--heads", "2", "--data", data, "--keep-mlp", "0.5", "--out", out,
             "--device", "cpu"],
            inputs: [Self.model, data], line: "error: --out \(out): folder \(folder.path("missing")) does not exist")
    }

    // MARK: every mismatch a one-line error

    @Test("data with more classes than the model has outputs (a class without images among them): one line, no trap")
    func moreDataClassesThanOutputs() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // Labels 0…10 with no image of class 4: eleven classes for a ten-output head.
        let data = try Self.idxData(folder) { index in index % 10 >= 4 ? index % 10 + 1 : index % 10 }
        let out = folder.path("p.safetensors")
        try Self.expectRefusal(
            ["prune", "--model", Self.model, "--heads", "2", "--data", data, "--keep-mlp", "0.5", "--out", out,
             "--device", "cpu"],
            inputs: [Self.model, data],
            line: "error: \(data): has 11 classes, but the model \(Self.model) has 10 outputs (classes 0...9); give "
                + "a model with 11 outputs, remove empty class folders, or pick --classes it has")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("--target-latency below what the method can reach: one line with the smallest latency it reaches")
    func unreachableLatency() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.idxData(folder)
        let out = folder.path("p.safetensors")
        let before = try Self.digests([Self.model, data])
        let result = try vitforge(["prune", "--model", Self.model, "--heads", "2", "--data", data, "--method", "vbp",
                                   "--target-latency", "0.0001", "--calib-images", "37", "--latency-batches", "1",
                                   "--out", out, "--device", "cpu"])
        #expect(result.status == 1, "\(result.stderr)")
        let line = String(result.stderrLines.last ?? "")
        let prefix = "error: invalid budget: target latency 0.0001 ms at batch 1 is out of reach by pruning mlpHidden: the smallest "
            + "model this method cuts takes "
        #expect(line.hasPrefix(prefix) && line.hasSuffix(" ms on this device; ask for at least that"), "\(line)")
        let smallest = Double(line.dropFirst(prefix.count).split(separator: " ").first ?? "")
        #expect((smallest ?? 0) > 0, "\(line)")
        #expect(result.stderrLines.filter { $0.hasPrefix("error:") }.count == 1)
        #expect(try Self.digests([Self.model, data]) == before)
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("a negative number for a fraction: the range error, not \"Missing value\"",
          arguments: [(["--target-macs", "-0.2"], "--target-macs -0.2"), (["--target-macs=-0.2"], "--target-macs -0.2"),
                      (["--keep-mlp", "-.5"], "--keep-mlp -0.5"), (["--target-params", "-1e-3"], "--target-params -0.001")])
    func negativeFraction(arguments: [String], shown: String) throws {
        try Self.expectRefusal(["prune", "--model", Self.model, "--out", "/tmp/never.safetensors"] + arguments,
                               inputs: [Self.model], status: 64,
                               line: "error: \(shown): a fraction kept, must be in (0, 1]")
    }

    @Test("--model naming a folder: a Hugging Face folder is read; any other folder is refused in plain words")
    func modelFolder() throws {
        let huggingFace = fixture("hf-vit-c")
        let info = try vitforge(["info", huggingFace])
        #expect(info.status == 0, "\(info.stderr)")
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let plain = folder.path("plain")
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        let model = folder.path("plain/weights.safetensors")
        try FileManager.default.copyItem(atPath: Self.model, toPath: model)
        try Self.expectRefusal(["eval", "--model", plain, "--device", "cpu"], inputs: [model],
                               line: "error: \(plain): is a folder without model.safetensors; give a .safetensors "
                                   + "file, or a Hugging Face model folder holding model.safetensors and config.json")
    }

    // MARK: devices said plainly

    static let openCLGPUPresent = (try? vitforge(["devices"]))?.stdout.contains("type gpu;") ?? false

    @Test("--device gpu without an OpenCL GPU: one line naming what exists (PoCL stays reachable as opencl)",
          .disabled(if: openCLGPUPresent, "this machine has an OpenCL GPU, which --device gpu then uses"))
    func gpuMeansGPU() throws {
        let before = try Self.digests([Self.model])
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let result = try vitforge(["infer", "--model", Self.model, "--heads", "2", "--input",
                                   fixture("fm-vit-c-ref.safetensors"), "--out", folder.path("logits.safetensors"),
                                   "--device", "gpu"])
        #expect(result.status == 1)
        let line = String(result.stderrLines.first ?? "")
        #expect(result.stderrLines.count == 1, "\(result.stderr)")
        #expect(line.hasPrefix("error: --device gpu: no OpenCL GPU") && line.hasSuffix("use --device cpu, or "
            + "--device opencl to run on an OpenCL CPU device anyway") || line.hasPrefix("error: --device gpu: no "
            + "OpenCL GPU ("), "\(line)")
        #expect(try Self.digests([Self.model]) == before)
    }

    @Test("a command that computes prints once which device and backend it runs on")
    func deviceLine() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.idxData(folder)
        let result = try vitforge(["eval", "--model", Self.model, "--heads", "2", "--data", data, "--device", "cpu"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").filter { $0.hasPrefix("device: ") }
        #expect(lines.count == 1, "\(result.stdout)")
        // The backend the default GEMM library gives (oneDNN where it is installed, as in CI; else OpenBLAS).
        let expected = CPUBackend(gemm: .standard).name
        #expect(lines.first?.hasPrefix("device: \(expected) ") == true
                && lines.first?.hasSuffix("— CPU backend") == true, "\(lines) (expected \(expected))")
    }

    // MARK: no silent flags

    @Test("a flag the method does not read: one line naming the methods that read it",
          arguments: [("taylor", ["--prune-ratio", "0.3"], "--prune-ratio", "vulcan"),
                      ("taylor", ["--prune-interval", "5"], "--prune-interval", "cpd"),
                      ("vbp", ["--keep-attn", "0.5"], "--keep-attn", "slim"),
                      ("magnitude", ["--calib-batches", "2"], "--calib-batches", "taylor"),
                      ("cpd", ["--no-bias-fold"], "--no-bias-fold", "vbp"),
                      ("vbp", ["--val-fraction", "0.2"], "--val-fraction", "cpd, vulcan"),
                      ("slim", ["--scope", "block"], "--scope", "vbp, magnitude, taylor, random, obs"),
                      // Without the compensation (on by default, it reads the calibration images).
                      ("magnitude", ["--no-compensate", "--calib-images", "64"], "--calib-images",
                       "vbp, vulcan, taylor, obs")])
    func foreignMethodFlag(method: String, flag: [String], name: String, readers: String) throws {
        try Self.expectRefusal(["prune", "--model", Self.model, "--method", method, "--target-macs", "0.6",
                                "--out", "/tmp/never.safetensors"] + flag,
                               inputs: [Self.model], status: 64,
                               line: "error: \(name) is read only by --method \(readers); --method \(method) does not read it")
    }

    @Test("a training setting without its phase: one line saying what it needs",
          arguments: [(["--lr", "1e-3"], "--lr has no effect without --epochs ≥ 1 (the method's own training phase)"),
                      (["--finetune-lr", "1e-3"], "--finetune-lr has no effect without --finetune-epochs ≥ 1"),
                      (["--alpha", "0.3", "--finetune-epochs", "1"], "--alpha has no effect without --distill")])
    func trainingFlagWithoutPhase(flags: [String], line: String) throws {
        try Self.expectRefusal(["prune", "--model", Self.model, "--method", "magnitude", "--target-macs", "0.6",
                                "--out", "/tmp/never.safetensors"] + flags,
                               inputs: [Self.model], status: 64, line: "error: " + line)
    }

    @Test("prune with no budget says the default it chose in its first line")
    func defaultBudgetLine() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.idxData(folder)
        let result = try vitforge(["prune", "--model", Self.model, "--heads", "2", "--data", data, "--method",
                                   "magnitude", "--latency-batches", "1", "--out", folder.path("p.safetensors"),
                                   "--device", "cpu"])
        #expect(result.status == 0, "\(result.stderr)")
        let first = result.stdout.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first == "budget: none given; keeping 50.0% of the MLP neurons (--keep-mlp 0.5, the default)")
    }

    // MARK: Ctrl-C everywhere

    #if VITFORGE_FAULT_INJECTION
    static let faultHooks = true
    #else
    static let faultHooks = false
    #endif

    @Test("Ctrl-C in a prune's evaluation or calibration: stops at the next batch, names only files that exist",
          .enabled(if: faultHooks, "built without -DVITFORGE_FAULT_INJECTION (.ci/run builds with it)"),
          arguments: [("evaluation", 1), ("calibration", 2)])
    func interruptedPass(pass: String, batches: Int) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try Self.idxData(folder, train: 97, test: 37)
        let out = folder.path("p.safetensors")
        let before = try Self.digests([Self.model, data])
        let result = try vitforge(["prune", "--model", Self.model, "--heads", "2", "--data", data, "--method", "vbp",
                                   "--keep-mlp", "0.5", "--batch-size", "7", "--out", out, "--device", "cpu"],
                                  environment: ["VITFORGE_FAULT_INTERRUPT": "\(pass):\(batches)"])
        #expect(result.status == 130, "\(result.stderr)")
        // Evaluation runs at least 256 images a batch: one batch of the 37 test images; calibration 7 a batch.
        let done = pass == "evaluation" ? 37 : 14
        let total = pass == "evaluation" ? 37 : 97
        let expected = "interrupted during \(pass) (\(done) of \(total) done); nothing was written, run the command "
            + "again to start over"
        let last = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last == expected, "\(result.stdout)")
        let left: [String] = try FileManager.default.contentsOfDirectory(atPath: folder.url.path).sorted()
        #expect(left == ["idx"])
        #expect(try Self.digests([Self.model, data]) == before)
    }
}
