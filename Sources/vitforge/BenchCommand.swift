import ArgumentParser
import Foundation
import ViTForgeDevice
import ViTForgeModel
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
            median of --runs timed runs. With --train a run is forward + cross-entropy backward + one AdamW step \
            on every parameter. GFLOP/s counts 2 FLOPs per multiply-accumulate of `vitforge info` (forward only; \
            a training step is counted as 3 forwards). Peak memory is the peak RSS of a child process that \
            measures only that row (see --in-process).
            """)

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("model"), help: "Model file (safetensors, timm names); repeat for several models.")
    var models: [String] = []

    @Option(name: .customLong("batch"), help: "Batch size; repeat for several.")
    var batches: [Int] = [64]

    @Flag(help: "Time a training step (forward + backward + AdamW) instead of inference.")
    var train = false

    @Option(name: .customLong("heads"), help: ArgumentHelp(
        "Attention heads, for a checkpoint whose head count cannot be inferred.",
        discussion: "Once for every model, or once per --model in the same order."))
    var headCounts: [Int] = []

    @Option(help: "Untimed runs before timing.")
    var warmup = 2

    @Option(help: "Timed runs; the median is reported.")
    var runs = 5

    @Option(help: "Write the results as JSON (DESIGN.md's bench keys) to this file, atomically.")
    var json: String?

    @Flag(help: "Measure every row in this process (peak memory is then a running high-water mark).")
    var inProcess = false

    @Flag(help: .hidden)
    var singleMeasurement = false

    func validate() throws {
        guard !models.isEmpty else { throw ValidationError("give at least one --model") }
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
            if singleMeasurement {
                let backend = try common.makeBackend()
                let row = try BenchMeasurement.measure(model: models[0], heads: heads(0), batch: batches[0], train: train,
                                                       warmup: warmup, runs: runs, seed: common.seed, backend: backend)
                print(row.jsonObject(device: backend.name))
                return
            }
            var rows: [BenchRow] = []
            var deviceName = ""
            print(BenchRow.tableHeader)
            for (index, model) in models.enumerated() {
                for batch in batches {
                    let row: BenchRow
                    if inProcess {
                        let backend = try common.makeBackend()
                        deviceName = backend.name
                        row = try BenchMeasurement.measure(model: model, heads: heads(index), batch: batch, train: train,
                                                           warmup: warmup, runs: runs, seed: common.seed,
                                                           backend: backend)
                    } else {
                        (row, deviceName) = try measureInChild(model: model, heads: heads(index), batch: batch)
                    }
                    print(row.tableLine)
                    rows.append(row)
                }
            }
            print("device: \(deviceName)")
            if let json {
                let text = "{\"device\": \(jsonStringLiteral(deviceName)), \"results\": [\n"
                    + rows.map { "  " + $0.jsonObject(device: nil) }.joined(separator: ",\n") + "\n]}\n"
                try SafetensorsWriter.writeAtomically(to: json) { descriptor in
                    let bytes = Array(text.utf8)
                    var written = 0
                    while written < bytes.count {
                        let n = bytes[written...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                        if n < 0 {
                            if errno == EINTR { continue }
                            throw BenchError("\(json): write: \(String(cString: strerror(errno)))")
                        }
                        written += n
                    }
                }
                print("wrote \(json)")
            }
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
        guard let line = String(data: data, encoding: .utf8)?.split(separator: "\n").last,
              let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let row = BenchRow(json: object), let device = object["device"] as? String
        else { throw BenchError("measuring \(model) at batch \(batch): unreadable child output") }
        return (row, device)
    }
}

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

/// One measured row (DESIGN.md's keys, plus GFLOP/s and the fastest run).
struct BenchRow {
    var model: String
    var batch: Int
    var mode: String
    var imagesPerSecond: Double
    var latencyMedianMs: Double
    var latencyMinMs: Double
    var gflopsPerSecond: Double
    var peakMemoryMB: Double

    static let tableHeader = "model                                     batch  mode    median ms     min ms   images/s"
        + "   GFLOP/s  peak MB"

    var tableLine: String {
        let name = model.count > 40 ? "…" + model.suffix(39) : model
        return name.padding(41) + pad(String(batch), 6) + "  " + mode.padding(6)
            + pad(fixed(latencyMedianMs, 2), 11) + pad(fixed(latencyMinMs, 2), 11) + pad(fixed(imagesPerSecond, 1), 11)
            + pad(fixed(gflopsPerSecond, 1), 10) + pad(fixed(peakMemoryMB, 1), 9)
    }

    func jsonObject(device: String?) -> String {
        var fields: [String] = []
        if let device { fields.append("\"device\": \(jsonStringLiteral(device))") }
        fields += ["\"model\": \(jsonStringLiteral(model))", "\"batch\": \(batch)", "\"mode\": \(jsonStringLiteral(mode))",
                   "\"images_per_second\": \(imagesPerSecond)", "\"latency_ms_median\": \(latencyMedianMs)",
                   "\"latency_ms_min\": \(latencyMinMs)", "\"gflops_per_second\": \(gflopsPerSecond)",
                   "\"peak_memory_mb\": \(peakMemoryMB)"]
        return "{" + fields.joined(separator: ", ") + "}"
    }

    init(model: String, batch: Int, mode: String, imagesPerSecond: Double, latencyMedianMs: Double,
         latencyMinMs: Double, gflopsPerSecond: Double, peakMemoryMB: Double) {
        self.model = model
        self.batch = batch
        self.mode = mode
        self.imagesPerSecond = imagesPerSecond
        self.latencyMedianMs = latencyMedianMs
        self.latencyMinMs = latencyMinMs
        self.gflopsPerSecond = gflopsPerSecond
        self.peakMemoryMB = peakMemoryMB
    }

    init?(json: [String: Any]) {
        guard let model = json["model"] as? String, let batch = json["batch"] as? Int,
              let mode = json["mode"] as? String, let images = (json["images_per_second"] as? NSNumber)?.doubleValue,
              let median = (json["latency_ms_median"] as? NSNumber)?.doubleValue,
              let minimum = (json["latency_ms_min"] as? NSNumber)?.doubleValue,
              let gflops = (json["gflops_per_second"] as? NSNumber)?.doubleValue,
              let peak = (json["peak_memory_mb"] as? NSNumber)?.doubleValue
        else { return nil }
        self.init(model: model, batch: batch, mode: mode, imagesPerSecond: images, latencyMedianMs: median,
                  latencyMinMs: minimum, gflopsPerSecond: gflops, peakMemoryMB: peak)
    }
}

enum BenchMeasurement {
    static func measure(model path: String, heads: Int?, batch: Int, train: Bool, warmup: Int, runs: Int,
                        seed: UInt64, backend: Backend) throws -> BenchRow {
        let weights = try ViTWeights.load(path: path, heads: heads)
        let model = try VisionTransformer(weights: weights, backend: backend)
        let c = model.config
        var random = SplitMix64(seed: seed)
        let imageCount = batch * c.inChannels * c.imageSize * c.imageSize
        let images = try backend.makeBuffer((0..<imageCount).map { _ in random.nextGaussian() })
        let labels = try backend.makeBuffer((0..<batch).map { _ in Int32(random.next() % UInt64(c.classes)) })

        var step: () throws -> Void
        if train {
            // Optimizer state, allocated once; AdamW is not part of the model yet, so the step calls the backend's
            // op on every parameter buffer (weight decay on every tensor: the timing is the same either way).
            let specs = c.parameterSpecs()
            try model.zeroGradients()
            let slots = try specs.map { spec -> (param: Buffer, grad: Buffer, m: Buffer, v: Buffer, count: Int) in
                guard let param = model.parameters[spec.name], let grad = model.gradients[spec.name] else {
                    throw BenchError("\(path): no parameter or gradient buffer for \(spec.name)")
                }
                return (param, grad, try backend.zeros(spec.elementCount), try backend.zeros(spec.elementCount),
                        spec.elementCount)
            }
            var stepNumber = 0
            step = {
                try model.zeroGradients()
                _ = try model.crossEntropy(images: images, labels: labels, batch: batch, backward: true)
                stepNumber += 1
                let hyper = AdamWHyperparameters(learningRate: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8,
                                                 weightDecay: 0.05, step: stepNumber)
                for slot in slots {
                    try backend.adamwStep(param: slot.param, grad: slot.grad, m: slot.m, v: slot.v, mask: nil,
                                          count: slot.count, hyper: hyper)
                }
                try backend.synchronize()
            }
        } else {
            step = {
                try model.forward(images: images, batch: batch, keepingActivations: false)
                try backend.synchronize()
            }
        }
        for _ in 0..<warmup { try step() }
        var seconds: [Double] = []
        for _ in 0..<runs {
            let start = monotonicSeconds()
            try step()
            seconds.append(monotonicSeconds() - start)
        }
        seconds.sort()
        let median = seconds.count % 2 == 1
            ? seconds[seconds.count / 2]
            : (seconds[seconds.count / 2 - 1] + seconds[seconds.count / 2]) / 2
        let forwardFlops = 2 * Double(c.cost().macs) * Double(batch)
        let flops = train ? 3 * forwardFlops : forwardFlops
        return BenchRow(model: path, batch: batch, mode: train ? "train" : "infer",
                        imagesPerSecond: Double(batch) / median, latencyMedianMs: median * 1000,
                        latencyMinMs: seconds[0] * 1000, gflopsPerSecond: flops / median / 1e9,
                        peakMemoryMB: peakResidentMegabytes())
    }
}

func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

/// The process's peak resident set size so far, in MB (Linux reports `ru_maxrss` in KiB).
func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// A small seeded generator, so that the input is the same for every model and run with the same --seed.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Box–Muller from two uniforms in (0, 1].
    mutating func nextGaussian() -> Float {
        let u1 = (Double(next() >> 11) + 1) / 9_007_199_254_740_992
        let u2 = Double(next() >> 11) / 9_007_199_254_740_992
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}


private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}

/// `value` with exactly `decimals` decimals, without Foundation's `String(format:)`.
private func fixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = Int((abs(value) * scale).rounded())
    let whole = scaled / Int(scale)
    let fraction = String(scaled % Int(scale))
    let sign = value < 0 && scaled != 0 ? "-" : ""
    return decimals == 0 ? sign + String(whole)
        : sign + String(whole) + "." + String(repeating: "0", count: decimals - fraction.count) + fraction
}
