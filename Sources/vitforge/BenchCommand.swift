import ArgumentParser
import Foundation
import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeRandom
import ViTForgeTrain
#if canImport(Glibc)
import Glibc
#endif

/// Times inference (or a training step) of one or more models at one or more batch sizes.
///
/// Peak memory is the process's peak RSS (`getrusage` `ru_maxrss`), a high-water mark that never goes down. So that
/// each row reports its own peak, every (model, batch, mode) is measured in a fresh child process (this same
/// binary, re-run with the hidden `--single-measurement` flag, which prints one JSON row on stdout); the parent only
/// collects, prints and writes the rows. `--in-process` measures everything in this process instead, in the order
/// listed, where a row's peak memory is then the high-water mark of everything measured before it too.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Latency, images/s, GFLOP/s and peak memory of inference (or a training step) per model and batch.",
        discussion: """
            For each model and batch: random N(0,1) input (already normalised), --warmup untimed runs, then the \
            median of --runs timed runs. With --train a run is one step of the trainer `vitforge train` runs \
            (the batch uploaded, forward + cross-entropy backward, AdamW with training's weight decay, at \
            learning rate 1e-5 so that nothing diverges). GFLOP/s counts 2 FLOPs per multiply-accumulate of `vitforge info` (forward only; \
            a training step is counted as 3 forwards). Peak memory is the peak RSS of a child process that \
            measures only that row (see --in-process). On the CPU backend every row also reports its GFLOP/s as a \
            share of the CPU's FMA peak, measured first (--peak prints it; with --peak alone nothing else is \
            measured).
            """)

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("model"), help: "Model file (safetensors, timm names); repeat for several models.")
    var models: [String] = []

    @Option(name: .customLong("batch"), help: "Batch size; repeat for several.")
    var batches: [Int] = [64]

    @Flag(help: "Time a training step (the trainer's: upload, forward + backward, AdamW) instead of inference.")
    var train = false

    @Flag(help: ArgumentHelp("With learned soft masks on every qkv column and MLP neuron (a ViT-Slim search's step: "
                             + "the masks' gradients and AdamW updates included)."))
    var softMasks = false

    @Option(name: .customLong("heads"), help: ArgumentHelp(
        "Attention heads, for a checkpoint whose head count cannot be inferred.",
        discussion: "Once for every model, or once per --model in the same order."))
    var headCounts: [Int] = []

    @Option(help: ArgumentHelp("Attention's core: fused (one operation, the default) or unfused (per-head GEMMs and "
                               + "a stored softmax: the reference path, to compare).", valueName: "fused|unfused"))
    var attention: AttentionPath = .fused

    @Option(help: "Untimed runs before timing.")
    var warmup = 2

    @Option(help: "Timed runs; the median is reported.")
    var runs = 5

    @Option(help: "Write the results as JSON (DESIGN.md's bench keys) to this file, atomically.")
    var json: String?

    @Flag(help: ArgumentHelp("Measure and print the CPU's float32 FMA peak (a register-only loop on one core and on "
                             + "all cores); --model is then optional."))
    var peak = false

    @Flag(help: ArgumentHelp("After the timed runs, one more run on the CPU backend with each operation timed: the "
                             + "share of GEMM, attention, LayerNorm, bias+GELU, elementwise, loss, AdamW, copies."))
    var profile = false

    @Flag(help: "Measure every row in this process (peak memory is then a running high-water mark).")
    var inProcess = false

    @Option(help: ArgumentHelp(
        "Instead of timing the model, measure its layers' latency table and write it to this JSON file (atomically) "
            + "for `prune --round-to table --latency-table T`.",
        discussion: "Once per device and model shape, with one --model and one --batch (the table's batch): linear "
            + "layers (GEMM and bias) at every width from 1 to the parent's MLP width, and with every per-head q/k "
            + "and v width from 1 to the parent's; attention's fused core at each of those per-head widths, at the "
            + "model's token count. --runs rounds, the shapes alternating within each round; each entry is the "
            + "median of its rounds.", valueName: "T"))
    var latencyTable: String?

    @Flag(help: .hidden)
    var singleMeasurement = false

    func validate() throws {
        guard !models.isEmpty || peak else { throw ValidationError("give at least one --model (or --peak)") }
        if latencyTable != nil {
            guard models.count == 1, batches.count == 1, !train, !peak, !profile, !softMasks, json == nil else {
                throw ValidationError("--latency-table measures one model at one batch: give one --model and one "
                                      + "--batch, without --train, --peak, --profile, --soft-masks or --json")
            }
        }
        guard batches.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--batch must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard headCounts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--heads must be at least 1") }
        guard headCounts.count <= 1 || headCounts.count == models.count else {
            throw ValidationError("give --heads once, or once per --model (\(models.count) models, "
                                  + "\(headCounts.count) --heads)")
        }
    }

    /// The --heads value for model number `index`, if any.
    private func heads(_ index: Int) -> Int? {
        headCounts.count == 1 ? headCounts[0] : headCounts.isEmpty ? nil : headCounts[index]
    }

    func run() throws {
        try reportingErrors {
            try CommandFiles(inputs: models.map { .init("--model", $0) },
                             outputs: [.init("--json", json), .init("--latency-table", latencyTable)]).check()
            if let latencyTable { return try measureLatencyTable(to: latencyTable) }
            if singleMeasurement {
                let backend = try common.makeBackend(announce: false)
                let row = try BenchMeasurement.measure(model: models[0], heads: heads(0), batch: batches[0], train: train,
                                                       softMasks: softMasks, attention: attention, warmup: warmup,
                                                       runs: runs, seed: common.seed, profile: profile,
                                                       backend: backend)
                print(String(decoding: try JSONEncoder().encode(BenchReport(device: backend.name, results: [row])),
                             as: UTF8.self))
                return
            }
            let gemm = try GemmSelection.fromEnvironment().get()  // a bad VITFORGE_GEMM: one line, before any row
            if profile, !models.isEmpty, try !runsOnCPU() {
                throw BenchError("--profile times the CPU backend's operations; on an OpenCL device set "
                                 + "VITFORGE_OPENCL_PROFILE=1 for device times per kernel")
            }
            var rows: [BenchRow] = []
            var deviceName = ""
            // Measured before any row (and in this process, not in a row's child), so that no model's threads
            // share the cores with it.
            let fmaPeak = try peak || runsOnCPU() ? FMAPeak.measure() : nil
            if let fmaPeak { print(fmaPeak.summary) }
            if !models.isEmpty { print(BenchRow.tableHeader) }
            for (index, model) in models.enumerated() {
                for batch in batches {
                    var row: BenchRow
                    if inProcess {
                        let backend = try common.makeBackend()
                        deviceName = backend.name
                        row = try BenchMeasurement.measure(model: model, heads: heads(index), batch: batch, train: train,
                                                           softMasks: softMasks, attention: attention, warmup: warmup,
                                                           runs: runs, seed: common.seed, profile: profile,
                                                           backend: backend)
                    } else {
                        (row, deviceName) = try measureInChild(model: model, heads: heads(index), batch: batch)
                    }
                    if let fmaPeak, row.backendKind == BackendKind.cpu.rawValue {
                        row.peakShare = row.gflopsPerSecond / fmaPeak.allCoresGflops
                    }
                    print(row.tableLine)
                    for line in row.profileLines { print(line) }
                    rows.append(row)
                }
            }
            let coreWarning = OpenBLAS.coreWarning
            print("device: \(deviceName.isEmpty ? "cpu" : deviceName); OpenBLAS core \(OpenBLAS.coreName); "
                  + "CPU GEMM \(gemm.description)")
            if let coreWarning { print("warning: \(coreWarning)") }
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                var report = BenchReport(device: deviceName, results: rows)
                report.blasCore = OpenBLAS.coreName
                report.blasCoreWarning = coreWarning
                report.gemm = gemm.setting
                report.gemmChoiceFile = gemm == .auto ? GemmSelection.choiceFile : nil
                report.fmaPeak = fmaPeak
                var text = try encoder.encode(report)
                text.append(UInt8(ascii: "\n"))
                try AtomicFile.write(text, to: json, protecting: models)
                print("wrote \(json)")
            }
        }
    }

    /// Whether the rows will run on the CPU backend (`--device cpu`, or `auto` on a machine without an OpenCL GPU).
    private func runsOnCPU() throws -> Bool {
        switch try common.deviceRequest() {
        case .cpu: return true
        case .auto: return DeviceSelection.autoChoice(from: (try? OpenCLRuntime.devices()) ?? []) == nil
        default: return false
        }
    }

    /// Runs this binary with `--single-measurement` for one row and parses the JSON line it prints.
    private func measureInChild(model: String, heads: Int?, batch: Int) throws -> (BenchRow, String) {
        let executable = try selfExecutablePath()
        var arguments = ["bench", "--single-measurement", "--model", model, "--batch", String(batch),
                         "--warmup", String(warmup), "--runs", String(runs), "--seed", String(common.seed)]
        if let device = common.device { arguments += ["--device", device] }
        if let heads { arguments += ["--heads", String(heads)] }
        if train { arguments.append("--train") }
        if softMasks { arguments.append("--soft-masks") }
        if profile { arguments.append("--profile") }
        arguments += ["--attention", attention.rawValue]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError("measuring \(model) at batch \(batch) failed (child exit \(process.terminationStatus))")
        }
        guard let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let report = try? JSONDecoder().decode(BenchReport.self, from: Data(line.utf8)),
              let row = report.results.first
        else { throw BenchError("measuring \(model) at batch \(batch): unreadable child output") }
        return (row, report.device)
    }
}

extension AttentionPath: ExpressibleByArgument {}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func selfExecutablePath() throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard length > 0 else { throw BenchError("cannot find this executable (/proc/self/exe)") }
    return String(cString: buffer)
}

/// `--json`'s file: DESIGN.md's `{"device": ..., "results": [...]}`. A `--single-measurement` child prints one
/// with its single row on one line.
struct BenchReport: Codable {
    var device: String
    var results: [BenchRow]
    /// The OpenBLAS kernels the CPU backend ran (`OPENBLAS_CORETYPE` or OpenBLAS's own choice), and a warning when
    /// they are older than the CPU supports.
    var blasCore: String?
    var blasCoreWarning: String?
    /// The CPU backend's GEMM library (`VITFORGE_GEMM`: openblas, onednn or auto), and under auto the file of
    /// per-shape choices the rows used.
    var gemm: String?
    var gemmChoiceFile: String?
    /// The CPU's FMA peak, measured before the rows (absent when no row ran on the CPU backend and no --peak).
    var fmaPeak: FMAPeak?

    enum CodingKeys: String, CodingKey {
        case device, results
        case blasCore = "blas_core"
        case blasCoreWarning = "blas_core_warning"
        case gemm
        case gemmChoiceFile = "gemm_choice_file"
        case fmaPeak = "fma_peak"
    }
}

/// One measured row (DESIGN.md's keys, plus GFLOP/s and the fastest run).
struct BenchRow: Codable {
    var model: String
    var batch: Int
    /// "infer" or "train".
    var mode: String
    var imagesPerSecond: Double
    var latencyMedianMs: Double
    var latencyMinMs: Double
    var gflopsPerSecond: Double
    /// GFLOP/s ÷ the CPU's FMA peak on all cores, for a row measured on the CPU backend.
    var peakShare: Double?
    /// The backend that measured the row ("cpu" or "opencl").
    var backendKind: String?
    var peakMemoryMB: Double
    /// True when measured with soft masks on (omitted otherwise).
    var softMasks: Bool?
    /// "unfused" when measured on the reference attention path (omitted for the default fused one).
    var attention: String?
    /// The backend's `blockingCalls` during one more run after the timed ones (the bench's own wait at the end of
    /// each run included): how often a step stops to wait for the device.
    var blockingCallsPerRun: Int?
    /// With `VITFORGE_OPENCL_PROFILE=1` on an OpenCL device: device time per kernel (and GEMM shape) of one more run,
    /// largest first (`OpenCLBackend.takeProfile()`).
    var kernelProfile: [OperationTime]?
    /// With --profile on the CPU backend: wall time per operation of one more run, largest first
    /// (`OperationTimeline`).
    var operationProfile: [OperationTime]?

    enum CodingKeys: String, CodingKey {
        case model, batch, mode
        case operationProfile = "op_profile"
        case softMasks = "soft_masks"
        case attention
        case blockingCallsPerRun = "blocking_calls_per_run"
        case kernelProfile = "kernel_profile"
        case imagesPerSecond = "images_per_second"
        case latencyMedianMs = "latency_ms_median"
        case latencyMinMs = "latency_ms_min"
        case gflopsPerSecond = "gflops_per_second"
        case peakShare = "fma_peak_share"
        case backendKind = "backend"
        case peakMemoryMB = "peak_memory_mb"
    }

    static let tableHeader = "model                                     batch  mode    median ms     min ms   images/s"
        + "   GFLOP/s  % peak  peak MB"

    var tableLine: String {
        let name = model.count > 40 ? "…" + model.suffix(39) : model
        let modeLabel = mode + (softMasks == true ? "+m" : "") + (attention == nil ? "" : "+u")
        return name.padding(41) + pad(String(batch), 6) + "  " + modeLabel.padding(6)
            + pad(Formatting.fixed(latencyMedianMs, decimals: 2), 11)
            + pad(Formatting.fixed(latencyMinMs, decimals: 2), 11) + pad(Formatting.decimal1(imagesPerSecond), 11)
            + pad(Formatting.decimal1(gflopsPerSecond), 10)
            + pad(peakShare.map { Formatting.decimal1(100 * $0) } ?? "", 8) + pad(Formatting.decimal1(peakMemoryMB), 9)
    }

    /// The kernel or operation profile under the row, when there is one.
    var profileLines: [String] { kernelProfileLines + operationProfileLines }

    /// --profile's breakdown: each category's share of the profiled run, then the ten slowest operations.
    var operationProfileLines: [String] {
        guard let operationProfile, !operationProfile.isEmpty else { return [] }
        let total = max(operationProfile.reduce(0) { $0 + $1.milliseconds }, 1e-12)
        var categories: [String: (calls: Int, ms: Double)] = [:]
        for entry in operationProfile {
            let sum = categories[entry.category] ?? (0, 0)
            categories[entry.category] = (sum.calls + entry.calls, sum.ms + entry.milliseconds)
        }
        func line(_ ms: Double, _ calls: Int, _ name: String) -> String {
            "    " + pad(Formatting.fixed(ms, decimals: 3), 10) + " ms " + pad(Formatting.fixed(100 * ms / total,
                                                                                             decimals: 1), 5)
                + "% " + pad(String(calls), 5) + "×  " + name
        }
        return ["  by category (wall time of one more run, \(Formatting.fixed(total, decimals: 1)) ms):"]
            + categories.sorted { ($0.value.ms, $1.key) > ($1.value.ms, $0.key) }
                .map { line($0.value.ms, $0.value.calls, $0.key) }
            + ["  slowest operations:"]
            + operationProfile.prefix(10).map { line($0.milliseconds, $0.calls, $0.name) }
    }

    /// The OpenCL kernel profile: one line per kernel, then the total.
    var kernelProfileLines: [String] {
        guard let kernelProfile, !kernelProfile.isEmpty else { return [] }
        let total = kernelProfile.reduce(0) { $0 + $1.milliseconds }
        return kernelProfile.map { entry in
            "    " + pad(Formatting.fixed(entry.milliseconds, decimals: 3), 10) + " ms "
                + pad(Formatting.fixed(100 * entry.milliseconds / max(total, 1e-12), decimals: 1), 5) + "% "
                + pad(String(entry.calls), 5) + "×  " + entry.name
        } + ["    " + pad(Formatting.fixed(total, decimals: 3), 10) + " ms device time in one run, "
             + "\(blockingCallsPerRun.map(String.init) ?? "?") blocking calls"]
    }
}

enum BenchMeasurement {
    static func measure(model path: String, heads: Int?, batch: Int, train: Bool, softMasks: Bool = false,
                        attention: AttentionPath = .fused, warmup: Int, runs: Int, seed: UInt64,
                        profile: Bool = false, backend: Backend) throws -> BenchRow {
        if profile && backend.kind != .cpu {
            throw BenchError("--profile times the CPU backend's operations; on an OpenCL device set "
                             + "VITFORGE_OPENCL_PROFILE=1 for device times per kernel")
        }
        let weights = try ViTWeights.load(path: path, heads: heads)
        let model = try VisionTransformer(weights: weights, backend: backend)
        model.attentionPath = attention
        // Masks at 1 compute the plain model, at the masked path's cost.
        let masks = softMasks ? try weights.config.blocks.map { block in
            BlockMasks(qkv: ChannelMask(values: try backend.makeBuffer([Float](repeating: 1, count: block.qkvRows)),
                                        gradient: try backend.zeros(block.qkvRows)),
                       mlpHidden: ChannelMask(values: try backend.makeBuffer(
                                                  [Float](repeating: 1, count: block.mlpHidden)),
                                              gradient: try backend.zeros(block.mlpHidden)))
        } : nil
        try model.setMasks(masks)
        let c = model.config
        var random = SplitMix64(seed: seed)
        let imageCount = batch * c.inChannels * c.imageSize * c.imageSize
        let images = (0..<imageCount).map { _ in gaussian(&random) }
        let labels = (0..<batch).map { _ in Int32(random.next() % UInt64(c.classes)) }

        let run: () throws -> Void
        if train {
            // Two more than timed: the run counting blocking calls and the profiled run.
            let batches = RepeatedBatch(images: images, labels: labels, batchesPerEpoch: warmup + max(runs, 1) + 2)
            let settings = TrainingSettings(epochs: 1, learningRate: 1e-5, warmupFraction: 0)
            let trainer = try Trainer(model: model, batches: batches, settings: settings, seed: seed)
            for (index, block) in (masks ?? []).enumerated() {
                for (name, mask) in [("qkv", block.qkv), ("mlp", block.mlpHidden)] {
                    guard let mask, let gradient = mask.gradient else { continue }
                    try trainer.optimizer.addSlot(name: "mask.\(index).\(name)", shape: [mask.values.count],
                                                  parameter: mask.values, gradient: gradient)
                }
            }
            run = {
                try trainer.step()
                // The step waits for nothing on the device (its loss stays there): wait for the whole step.
                try backend.synchronize()
            }
        } else {
            let deviceImages = try backend.makeBuffer(images)
            run = {
                try model.forward(images: deviceImages, batch: batch, keepingActivations: false)
                try backend.synchronize()
            }
        }
        let latency = try Latency.measure(warmup: warmup, runs: runs, run)
        // After the timed runs, so that neither the counting nor the profiling events touch the times.
        let blockingBefore = backend.blockingCalls
        try run()
        let blockingCalls = backend.blockingCalls - blockingBefore
        var kernelProfile: [OperationTime]?
        if let openCL = backend as? OpenCLBackend, openCL.isProfiling {
            _ = try openCL.takeProfile()  // the events of the runs before
            try run()
            kernelProfile = try openCL.takeProfile()
        }
        var operationProfile: [OperationTime]?
        if profile {
            OperationTimeline.start()
            try run()
            operationProfile = OperationTimeline.stop()
        }
        let median = latency.medianSeconds
        let forwardFlops = 2 * Double(c.cost().macs) * Double(batch)
        let flops = train ? 3 * forwardFlops : forwardFlops
        return BenchRow(model: path, batch: batch, mode: train ? "train" : "infer",
                        imagesPerSecond: Double(batch) / median, latencyMedianMs: median * 1000,
                        latencyMinMs: latency.minimumSeconds * 1000, gflopsPerSecond: flops / median / 1e9,
                        backendKind: backend.kind.rawValue, peakMemoryMB: peakResidentMegabytes(),
                        softMasks: softMasks ? true : nil,
                        attention: attention == .fused ? nil : attention.rawValue,
                        blockingCallsPerRun: blockingCalls, kernelProfile: kernelProfile,
                        operationProfile: operationProfile)
    }

    /// N(0, 1) by Box–Muller from two uniforms, the first in (0, 1] so that its logarithm is finite.
    private static func gaussian(_ random: inout SplitMix64) -> Float {
        let u1 = (Double(random.next() >> 11) + 1) * 0x1p-53
        let u2 = Double(random.next() >> 11) * 0x1p-53
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}

/// The bench's batch source for `Trainer`: the same seeded batch at every position. What a step costs does not
/// depend on which images it sees, and a fixed batch keeps decoding and augmentation out of the time while the
/// trainer still copies and uploads the batch as in training.
private final class RepeatedBatch: TrainingBatches {
    let batchesPerEpoch: Int
    let maximumBatch: Int
    let imageElements: Int
    let dataSeed: UInt64 = 0
    private let images: [Float]   // [maximumBatch, C, H, W]
    private let labels: [Int32]   // [maximumBatch]

    init(images: [Float], labels: [Int32], batchesPerEpoch: Int) {
        self.images = images
        self.labels = labels
        self.batchesPerEpoch = batchesPerEpoch
        maximumBatch = labels.count
        imageElements = images.count / max(labels.count, 1)
    }

    func fill(epoch: Int, index: Int, images: UnsafeMutableBufferPointer<Float>,
              labels: UnsafeMutableBufferPointer<Int32>) throws -> Int {
        _ = images.update(fromContentsOf: self.images)
        _ = labels.update(fromContentsOf: self.labels)
        return maximumBatch
    }
}

/// The process's peak resident set size so far, in MB (Linux reports `ru_maxrss` in KiB).
func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

extension FMAPeak {
    /// One line: the instruction set and both rates.
    var summary: String {
        "FMA peak (\(instructionSet), register-only loop): \(Formatting.decimal1(perCoreGflops)) GFLOP/s per core, "
            + "\(Formatting.decimal1(allCoresGflops)) GFLOP/s on \(threads) thread\(threads == 1 ? "" : "s")"
    }
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}
