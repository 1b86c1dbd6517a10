// The OpenCL backend's row operations (LayerNorm, softmax, losses), column reductions (bias and LayerNorm
// parameter gradients, column statistics, mask gradients) and fused attention at ViT shapes, for both kernel shapes
// (OpenCLKernelShape: one work-group per row / two-stage reductions for GPUs, one work-item per row for CPU devices).
// Usage (from the repository root):
//   swift build -c release --package-path Benchmarks --product op-bench
//   Benchmarks/.build/release/op-bench [--rounds N] [--shapes gpu,cpu] [--device opencl:P.D] [--only TEXT]
//                                      [--json PATH] [--attention-tiles RxLxTxW ...] [--gemm-batch B]
// Each --attention-tiles adds a GPU-shaped backend built with that tile shape (OpenCLAttentionTiles), timed in the
// same alternating rounds as the others. With --gemm-batch B the GEMMs (CLBlast) of DeiT-Tiny and DeiT-Small at B
// images are timed too, named with their transposes and m×n×k (×batch), which Benchmarks/gpu/gpu_torch.py parses.
// Each round times every operation once per shape, the shapes alternating (a load spike on the shared machine then
// hits both alike); a sample is enough back-to-back calls for ≥ 20 ms, then a clFinish, divided by the calls.
// Reported: the median over the rounds, in ms per call. Benchmarks/op_bench_compare.py runs this binary built from
// two checkouts in alternating processes, for before/after kernel changes.
// No Foundation: statically linked (Benchmarks/gpu/pack.sh) it would carry ICU's data, ~45 MB of the GPU pack's 64.
#if canImport(Glibc)
import Glibc
#endif
import ViTForgeDevice
import ViTForgeSupport

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

func randomValues(_ count: Int, seed: UInt64, scale: Float = 1, offset: Float = 0) -> [Float] {
    var state = seed
    return (0 ..< count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int32(truncatingIfNeeded: state >> 33)) / Float(Int32.max) * scale + offset
    }
}

/// One benchmarked call: `run` launches the operation on a backend with buffers made once (shared by every backend
/// of the device: the backends of one device share its context).
struct TimedOp {
    let name: String
    let run: (Backend) throws -> Void
}

/// The operations at their ViT shapes. DeiT at batch 64: 64·197 = 12,608 tokens (64·50 = 3,200 at 112×112 input),
/// widths 192 / 384 / 768 (Tiny / Small / Base), attention rows heads·images·tokens × tokens, classifier rows 64 or
/// 256 × 10 or 1000 classes.
func makeOps(_ device: Backend, only: String?, gemmBatch: Int?) throws -> [TimedOp] {
    var ops: [TimedOp] = []
    func add(_ name: String, _ make: () throws -> (Backend) throws -> Void) rethrows {
        if let only, !name.contains(only) { return }
        ops.append(TimedOp(name: name, run: try make()))
    }
    // Every GEMM of a DeiT block's training step (a Linear's forward x·Wᵀ, its dX and dW), and one head's scores
    // q·kᵀ of the unfused attention, at 197 tokens. Only with --gemm-batch (the other operations are the kernels').
    for (model, width, heads, hidden) in [("deit-tiny", 192, 3, 768), ("deit-small", 384, 6, 1536)] {
        guard let gemmBatch else { break }
        let rows = gemmBatch * 197
        for (layer, inFeatures, outFeatures) in [("qkv", width, 3 * width), ("proj", width, width),
                                                 ("fc1", width, hidden), ("fc2", hidden, width)] {
            for (pass, spec) in [("forward", GemmSpec(m: rows, n: outFeatures, k: inFeatures, transB: true)),
                                 ("dX", GemmSpec(m: rows, n: inFeatures, k: outFeatures)),
                                 ("dW", GemmSpec(m: outFeatures, n: inFeatures, k: rows, transA: true, beta: 1))] {
                try add(gemmName(model, "\(layer) \(pass)", spec)) { try gemmOp(device, spec) }
            }
        }
        var scores = GemmSpec(m: 197, n: 197, k: width / heads, transB: true)
        scores.lda = 3 * width
        scores.ldb = 3 * width
        scores.offsetB = width
        scores.strideA = 197 * 3 * width
        scores.strideB = 197 * 3 * width
        scores.strideC = 197 * 197
        scores.batch = gemmBatch
        try add(gemmName(model, "q·kᵀ one head", scores)) { try gemmOp(device, scores) }
    }
    for rows in [12608, 3200] {
        for cols in [192, 384, 768] {
            let shape = "\(rows)x\(cols)"
            let count = rows * cols
            try add("layerNormForward \(shape)") {
                let x = try device.makeBuffer(randomValues(count, seed: 1, scale: 2, offset: 0.5))
                let gamma = try device.makeBuffer(randomValues(cols, seed: 2, offset: 1))
                let beta = try device.makeBuffer(randomValues(cols, seed: 3))
                let out = try device.allocate(count), mean = try device.allocate(rows), rstd = try device.allocate(rows)
                return { try $0.layerNormForward(x: x, gamma: gamma, beta: beta, out: out, mean: mean, rstd: rstd,
                                                 rows: rows, cols: cols, eps: 1e-6) }
            }
            try add("layerNormBackward \(shape)") {
                let x = try device.makeBuffer(randomValues(count, seed: 1, scale: 2, offset: 0.5))
                let dOut = try device.makeBuffer(randomValues(count, seed: 4))
                let gamma = try device.makeBuffer(randomValues(cols, seed: 2, offset: 1))
                let mean = try device.makeBuffer(randomValues(rows, seed: 5, offset: 0.5))
                let rstd = try device.makeBuffer(randomValues(rows, seed: 6, scale: 0.1, offset: 1))
                let dX = try device.zeros(count), dGamma = try device.zeros(cols), dBeta = try device.zeros(cols)
                return { try $0.layerNormBackward(dOut: dOut, x: x, gamma: gamma, mean: mean, rstd: rstd, dX: dX,
                                                  dGamma: dGamma, dBeta: dBeta, rows: rows, cols: cols) }
            }
            // A residual-width mask keeping 3/4 of the channels.
            let keepValues = (0 ..< cols).map { Float($0 % 4 == 3 ? 0 : 1) }
            try add("maskedLayerNormForward \(shape)") {
                let x = try device.makeBuffer(randomValues(count, seed: 1, scale: 2, offset: 0.5))
                let gamma = try device.makeBuffer(randomValues(cols, seed: 2, offset: 1))
                let beta = try device.makeBuffer(randomValues(cols, seed: 3)), keep = try device.makeBuffer(keepValues)
                let out = try device.allocate(count), mean = try device.allocate(rows), rstd = try device.allocate(rows)
                return { try $0.maskedLayerNormForward(x: x, gamma: gamma, beta: beta, keep: keep, out: out,
                                                       mean: mean, rstd: rstd, rows: rows, cols: cols, eps: 1e-6) }
            }
            try add("maskedLayerNormBackward \(shape)") {
                let x = try device.makeBuffer(randomValues(count, seed: 1, scale: 2, offset: 0.5))
                let dOut = try device.makeBuffer(randomValues(count, seed: 4))
                let gamma = try device.makeBuffer(randomValues(cols, seed: 2, offset: 1))
                let keep = try device.makeBuffer(keepValues)
                let mean = try device.makeBuffer(randomValues(rows, seed: 5, offset: 0.5))
                let rstd = try device.makeBuffer(randomValues(rows, seed: 6, scale: 0.1, offset: 1))
                let dX = try device.zeros(count), dGamma = try device.zeros(cols), dBeta = try device.zeros(cols)
                return { try $0.maskedLayerNormBackward(dOut: dOut, x: x, gamma: gamma, keep: keep, mean: mean,
                                                        rstd: rstd, dX: dX, dGamma: dGamma, dBeta: dBeta, rows: rows,
                                                        cols: cols) }
            }
            try add("addBiasBackward \(shape)") {
                let dOut = try device.makeBuffer(randomValues(count, seed: 4)), dBias = try device.zeros(cols)
                return { try $0.addBiasBackward(dOut: dOut, dBias: dBias, rows: rows, cols: cols) }
            }
            try add("columnStatisticsAccumulate \(shape)") {
                let x = try device.makeBuffer(randomValues(count, seed: 1, scale: 2, offset: 0.5))
                let state = try device.zeros(ColumnStatistics.stateCount(cols))
                return { try $0.columnStatisticsAccumulate(x: x, rows: rows, cols: cols, state: state, countBefore: 0) }
            }
            try add("maskGradient \(shape)") {
                let x = try device.makeBuffer(randomValues(count, seed: 1)), dY = try device.makeBuffer(randomValues(count, seed: 4))
                let dMask = try device.zeros(cols)
                return { try $0.maskGradient(x: x, dY: dY, dMask: dMask, rows: rows, cols: cols) }
            }
        }
    }
    // Attention probabilities: DeiT-Tiny (3 heads) and DeiT-Small (6 heads) at 197 tokens, DeiT-Tiny at 50.
    for (heads, tokens) in [(3, 197), (6, 197), (3, 50)] {
        let rows = heads * 64 * tokens, cols = tokens, count = rows * cols
        let shape = "\(rows)x\(cols)"
        try add("softmaxForward \(shape)") {
            let x = try device.makeBuffer(randomValues(count, seed: 7, scale: 8)), out = try device.allocate(count)
            return { try $0.softmaxForward(x: x, out: out, rows: rows, cols: cols, scale: 0.125) }
        }
        try add("softmaxBackward \(shape)") {
            let dOut = try device.makeBuffer(randomValues(count, seed: 8))
            let y = try device.makeBuffer(randomValues(count, seed: 9, scale: 0.5, offset: 0.5))
            let dX = try device.zeros(count)
            return { try $0.softmaxBackward(dOut: dOut, out: y, dX: dX, rows: rows, cols: cols, scale: 0.125) }
        }
    }
    // Fused attention (forward, and backward with its recomputation): DeiT-Tiny and DeiT-Small heads at 197 tokens
    // (batch 16), and the 6×192 ViT at 50 tokens (batch 64).
    for (heads, tokens, batch) in [(3, 197, 16), (6, 197, 16), (3, 50, 64)] {
        let layout = QKVLayout(qkDims: [Int](repeating: 64, count: heads), vDims: [Int](repeating: 64, count: heads))
        let rows = batch * tokens
        let shape = "\(batch)x\(tokens) \(heads)h"
        try add("attentionForward \(shape)") {
            let qkv = try device.makeBuffer(randomValues(rows * layout.qkvFeatures, seed: 12))
            let out = try device.allocate(rows * layout.totalV), lse = try device.allocate(heads * rows)
            return { try $0.attentionForward(qkv: qkv, layout: layout, batch: batch, tokens: tokens, scale: 0.125,
                                             out: out, logSumExp: lse) }
        }
        try add("attentionBackward \(shape)") {
            let qkv = try device.makeBuffer(randomValues(rows * layout.qkvFeatures, seed: 12))
            let out = try device.allocate(rows * layout.totalV), lse = try device.allocate(heads * rows)
            try device.attentionForward(qkv: qkv, layout: layout, batch: batch, tokens: tokens, scale: 0.125,
                                        out: out, logSumExp: lse)
            let dOut = try device.makeBuffer(randomValues(rows * layout.totalV, seed: 13))
            let dQKV = try device.zeros(rows * layout.qkvFeatures)
            return { try $0.attentionBackward(qkv: qkv, out: out, logSumExp: lse, dOut: dOut, dQKV: dQKV,
                                              layout: layout, batch: batch, tokens: tokens, scale: 0.125) }
        }
    }
    for rows in [64, 256] {
        for classes in [10, 1000] {
            let shape = "\(rows)x\(classes)", count = rows * classes
            try add("crossEntropyForward \(shape)") {
                let logits = try device.makeBuffer(randomValues(count, seed: 10, scale: 6))
                let labels = try device.makeBuffer((0 ..< rows).map { Int32($0 * 7 % classes) })
                let probs = try device.allocate(count), losses = try device.allocate(rows)
                return { try $0.crossEntropyForward(logits: logits, labels: labels, probs: probs, losses: losses,
                                                    rows: rows, classes: classes, smoothing: 0.1) }
            }
            try add("distillationForward \(shape)") {
                let student = try device.makeBuffer(randomValues(count, seed: 10, scale: 6))
                let teacher = try device.makeBuffer(randomValues(count, seed: 11, scale: 6))
                let studentProbs = try device.allocate(count), teacherProbs = try device.allocate(count)
                let losses = try device.allocate(rows)
                return { try $0.distillationForward(student: student, teacher: teacher, studentProbs: studentProbs,
                                                    teacherProbs: teacherProbs, losses: losses, rows: rows,
                                                    classes: classes, temperature: 4) }
            }
        }
    }
    return ops
}

func gemmName(_ model: String, _ what: String, _ spec: GemmSpec) -> String {
    "gemm \(model) \(what) \(spec.transA ? "T" : "N")\(spec.transB ? "T" : "N") \(spec.m)x\(spec.n)x\(spec.k)"
        + (spec.batch == 1 ? "" : " x\(spec.batch)")
}

func gemmOp(_ device: Backend, _ spec: GemmSpec) throws -> (Backend) throws -> Void {
    let a = try device.makeBuffer(randomValues(spec.extentA, seed: 14))
    let b = try device.makeBuffer(randomValues(spec.extentB, seed: 15))
    let c = try device.zeros(spec.extentC)
    if spec.batch == 1 { return { try $0.gemm(spec, a: a, b: b, c: c) } }
    return { try $0.gemmStridedBatched(spec, a: a, b: b, c: c) }
}

/// Seconds per call of one sample: `calls` back-to-back calls, then a synchronize.
func sample(_ op: TimedOp, on backend: Backend, calls: Int) throws -> Double {
    let start = now()
    for _ in 0 ..< calls { try op.run(backend) }
    try backend.synchronize()
    return (now() - start) / Double(calls)
}

var rounds = 5
var shapeNames = ["cpu", "gpu"]
var deviceSpec: String?
var only: String?
var jsonPath: String?
var tileShapes: [OpenCLAttentionTiles] = []
var gemmBatch: Int?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--rounds": rounds = max(1, Int(arguments.next() ?? "") ?? rounds)
    case "--shapes": shapeNames = (arguments.next() ?? "").split(separator: ",").map(String.init)
    case "--device": deviceSpec = arguments.next()
    case "--only": only = arguments.next()
    case "--json": jsonPath = arguments.next()
    case "--attention-tiles":
        do { tileShapes.append(try OpenCLAttentionTiles(parsing: arguments.next() ?? "")) } catch {
            fputs("error: --attention-tiles: \(error)\n", stderr)
            exit(2)
        }
    case "--gemm-batch": gemmBatch = max(1, Int(arguments.next() ?? "") ?? 64)
    default:
        fputs("usage: op-bench [--rounds N] [--shapes gpu,cpu] [--device opencl:P.D] [--only TEXT] [--json PATH]\n"
              + "                [--attention-tiles RxLxTxW ...] [--gemm-batch B]\n", stderr)
        exit(2)
    }
}

do {
    let devices = try OpenCLRuntime.devices()
    guard let device = deviceSpec.map({ spec in devices.first { $0.spec == spec } }) ?? devices.first else {
        fputs("error: no OpenCL device\(deviceSpec.map { " \($0)" } ?? "")\n", stderr)
        exit(1)
    }
    var backends: [(shape: String, backend: OpenCLBackend)] = []
    for name in shapeNames {
        guard let shape = OpenCLKernelShape(rawValue: name) else {
            fputs("error: --shapes: \(name) is not gpu or cpu\n", stderr)
            exit(2)
        }
        backends.append((name, try OpenCLBackend(device: device, kernelShape: shape)))
    }
    for tiles in tileShapes {
        backends.append(("gpu \(tiles)", try OpenCLBackend(device: device, kernelShape: .gpu, attentionTiles: tiles)))
    }
    let ops = try makeOps(backends[0].backend, only: only, gemmBatch: gemmBatch)
    print("\(device.spec) \(device.name) (\(device.platformName)); ms per call, median of \(rounds) alternating rounds")
    print("op".rightPadded(40)
        + backends.map { " \($0.shape)".leftPadded(max(12, $0.shape.count + 2)) }.joined())
    var results: [String: [String: Double]] = [:]
    for op in ops {
        // Warm-up (kernel compilation on first use) and calibration: calls per sample for ≥ 20 ms.
        var calls: [Int] = []
        for (_, backend) in backends {
            let once = try sample(op, on: backend, calls: 1)
            calls.append(max(1, min(200, Int(0.02 / max(once, 1e-6)))))
        }
        var times = [[Double]](repeating: [], count: backends.count)
        for _ in 0 ..< rounds {
            for (index, entry) in backends.enumerated() {
                times[index].append(try sample(op, on: entry.backend, calls: calls[index]))
            }
        }
        var line = op.name.rightPadded(40)
        for (index, entry) in backends.enumerated() {
            let median = times[index].sorted()[rounds / 2] * 1e3
            results[op.name, default: [:]][entry.shape] = median
            line += fixed3(median).leftPadded(max(12, entry.shape.count + 2))
        }
        print(line)
        fflush(stdout)
    }
    if let jsonPath {
        try writeJSON(results, to: jsonPath)
    }
} catch {
    fputs("error: \(error)\n", stderr)
    exit(1)
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }

    func rightPadded(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

/// `value` with three decimals (what "%.3f" prints for the non-negative times here).
func fixed3(_ value: Double) -> String {
    guard value.isFinite else { return "\(value)" }
    let thousandths = Int((abs(value) * 1000).rounded())
    let fraction = String(thousandths % 1000)
    let sign = value < 0 ? "-" : ""
    return sign + "\(thousandths / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
}

/// `{"op": {"shape": ms}}` with sorted keys, written beside the target and renamed (a reader never sees half).
func writeJSON(_ results: [String: [String: Double]], to path: String) throws {
    func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences("\\", "\\\\").replacingOccurrences("\"", "\\\"") + "\""
    }
    let body = results.keys.sorted().map { op in
        let times = results[op]!.keys.sorted().map { "    \(quoted($0)): \(results[op]![$0]!)" }
        return "  \(quoted(op)): {\n" + times.joined(separator: ",\n") + "\n  }"
    }.joined(separator: ",\n")
    let temporary = path + ".tmp"
    guard let file = fopen(temporary, "w") else { throw BenchFileError(path: path) }
    let written = fputs("{\n" + body + "\n}\n", file) >= 0
    guard fclose(file) == 0, written, rename(temporary, path) == 0 else {
        unlink(temporary)
        throw BenchFileError(path: path)
    }
}

struct BenchFileError: Error, CustomStringConvertible {
    let path: String
    var description: String { "\(path): cannot write (\(String(cString: strerror(errno))))" }
}

extension String {
    /// Every `target` replaced by `replacement` (Foundation's replacingOccurrences(of:with:) without Foundation).
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
