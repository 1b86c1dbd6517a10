// GEMM throughput at DeiT-Tiny's shapes (batch 64 → 12608 tokens): the CPU backend and every OpenCL device against
// bare OpenBLAS (`cblas_sgemm`), measured in the same run. Usage:
//   swift run -c release --package-path Benchmarks gemm-bench [--repeats N] [--no-opencl] [--device opencl:P.D]
//   swift run -c release --package-path Benchmarks gemm-bench --model M.safetensors [--heads H] [--batch B] [--json]
// The --model mode times every GEMM of that model's forward pass at that batch with bare OpenBLAS and prints the
// bound it sets: images/s if the forward did nothing but those GEMMs (see ModelBound.swift).
import ViTForgeDevice
#if canImport(Glibc)
import Glibc
#endif

/// OpenBLAS's own thread count at start-up, before a `CPUBackend` sets it to 1: what a plain BLAS user gets.
let bareThreads = OpenBLAS.threads

struct Shape {
    let name: String
    let spec: GemmSpec
}

func attentionSpec() -> GemmSpec {
    // 192 = 64 images × 3 heads of (197×64)·(197×64)ᵀ, as scores = q·kᵀ.
    var spec = GemmSpec(m: 197, n: 197, k: 64, transB: true)
    spec.batch = 192
    spec.strideA = 197 * 64
    spec.strideB = 197 * 64
    spec.strideC = 197 * 197
    return spec
}

let shapes = [
    Shape(name: "qkv  12608x192->576", spec: GemmSpec(m: 12608, n: 576, k: 192)),
    Shape(name: "fc1  12608x192->768", spec: GemmSpec(m: 12608, n: 768, k: 192)),
    Shape(name: "fc2  12608x768->192", spec: GemmSpec(m: 12608, n: 192, k: 768)),
    Shape(name: "attn 192x(197x64.64x197)", spec: attentionSpec()),
]

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

func sizes(_ spec: GemmSpec) -> (a: Int, b: Int, c: Int) {
    (spec.extentA, spec.extentB, spec.extentC)
}

func randomValues(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int32(truncatingIfNeeded: state >> 33)) / Float(Int32.max) * 0.5
    }
}

/// A timed GEMM: `prepare` allocates and fills its operands once; the returned closure runs one (batched) product
/// and waits for it.
typealias TimedGemm = () throws -> Void

/// Bare OpenBLAS: one `cblas_sgemm` per matrix of the batch, with OpenBLAS's own threads.
final class BareOpenBLASGemm {
    let spec: GemmSpec
    var a: [Float], b: [Float], c: [Float]

    init(_ spec: GemmSpec) {
        self.spec = spec
        let (countA, countB, countC) = sizes(spec)
        a = randomValues(countA, seed: 1)
        b = randomValues(countB, seed: 2)
        c = [Float](repeating: 0, count: countC)
    }

    func run() {
        let spec = self.spec
        // The CPU backend runs OpenBLAS single-threaded (it splits work itself); a plain BLAS user has the start-up
        // thread count.
        let saved = OpenBLAS.threads
        OpenBLAS.threads = bareThreads
        defer { OpenBLAS.threads = saved }
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    for i in 0..<spec.batch {
                        OpenBLAS.sgemm(transA: spec.transA, transB: spec.transB, m: spec.m, n: spec.n, k: spec.k,
                                       alpha: spec.alpha, a: a.baseAddress! + i * spec.strideA, lda: spec.lda,
                                       b: b.baseAddress! + i * spec.strideB, ldb: spec.ldb, beta: spec.beta,
                                       c: c.baseAddress! + i * spec.strideC, ldc: spec.ldc)
                    }
                }
            }
        }
    }
}

func backendGemm(_ backend: Backend, _ spec: GemmSpec) throws -> TimedGemm {
    let (countA, countB, countC) = sizes(spec)
    let a = try backend.makeBuffer(randomValues(countA, seed: 1))
    let b = try backend.makeBuffer(randomValues(countB, seed: 2))
    let c = try backend.zeros(countC)
    return {
        if spec.batch > 1 {
            try backend.gemmStridedBatched(spec, a: a, b: b, c: c)
        } else {
            try backend.gemm(spec, a: a, b: b, c: c)
        }
        try backend.synchronize()
    }
}

/// Runs the contenders interleaved (one run of each per round, after one warm-up round) and returns each one's
/// median seconds: on a shared, noisy machine a load spike then hits every contender alike, so ratios stay fair.
func interleavedMedians(_ contenders: [TimedGemm], repeats: Int) throws -> [Double] {
    for run in contenders { try run() }
    var times = [[Double]](repeating: [], count: contenders.count)
    for _ in 0..<repeats {
        for (index, run) in contenders.enumerated() {
            // After a call with OpenBLAS's own threads, its idle workers spin (sched_yield) for a while; on a
            // 2-core machine that takes a core from the next contender's second worker. Let them go to sleep first.
            usleep(150_000)
            let start = now()
            try run()
            times[index].append(now() - start)
        }
    }
    return times.map { $0.sorted()[$0.count / 2] }
}

func format(_ value: Double, _ decimals: Int = 1) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = "\(rounded)"
    if let dot = text.firstIndex(of: "."), text.distance(from: dot, to: text.endIndex) - 1 < decimals {
        text += String(repeating: "0", count: decimals - (text.distance(from: dot, to: text.endIndex) - 1))
    }
    return text
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}

var repeats = 5
var includeOpenCL = true
var openCLSpec: String?
var modelPath: String?
var modelHeads: Int?
var modelBatch = 64
var printJSON = false
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--repeats": repeats = Int(arguments.next() ?? "") ?? repeats
    case "--no-opencl": includeOpenCL = false
    case "--device": openCLSpec = arguments.next()
    case "--model": modelPath = arguments.next()
    case "--heads": modelHeads = Int(arguments.next() ?? "")
    case "--batch": modelBatch = Int(arguments.next() ?? "") ?? modelBatch
    case "--json": printJSON = true
    default:
        fputs("usage: gemm-bench [--repeats N] [--no-opencl] [--device opencl:P.D]\n"
              + "       gemm-bench --model M.safetensors [--heads H] [--batch B] [--repeats N] [--json]\n", stderr)
        exit(2)
    }
}

if let modelPath {
    do {
        try modelBound(path: modelPath, heads: modelHeads, batch: modelBatch, repeats: repeats, json: printJSON)
        exit(0)
    } catch {
        fputs("error: \(error)\n", stderr)
        exit(1)
    }
}

var backends: [Backend] = [CPUBackend()]
if includeOpenCL {
    do {
        let devices = try OpenCLRuntime.devices()
        let chosen = openCLSpec.map { spec in devices.filter { $0.spec == spec } } ?? devices
        for device in chosen { backends.append(try OpenCLBackend(device: device)) }
    } catch {
        fputs("OpenCL skipped: \(error)\n", stderr)
    }
}

// The CPU's FMA peak on all cores (what `vitforge bench --peak` measures): no GEMM on the CPU can beat it, so a CPU
// GEMM above 100% means the peak loop is not the machine's limit (the suite's FMAPeakTests check only what cannot
// depend on timing).
let fmaPeak = FMAPeak.measure()
print("FMA peak (\(fmaPeak.instructionSet)): \(format(fmaPeak.perCoreGflops)) GFLOP/s per core, "
      + "\(format(fmaPeak.allCoresGflops)) on \(fmaPeak.threads) threads")
print("GEMM GFLOP/s, median of \(repeats) interleaved runs after a warm-up; OpenBLAS core \(OpenBLAS.coreName), \(bareThreads) threads")
print("ratio = backend / bare OpenBLAS in the same run; % peak = a CPU GEMM's share of the all-core FMA peak")
var gemmsAbovePeak: [String] = []
for shape in shapes {
    let flops = shape.spec.flops
    let bare = BareOpenBLASGemm(shape.spec)
    var contenders: [TimedGemm] = [{ bare.run() }]
    var names = ["bare cblas_sgemm loop"]
    var onCPU = [true]
    for backend in backends {
        do {
            contenders.append(try backendGemm(backend, shape.spec))
            names.append(backend.name)
            onCPU.append(backend.kind == .cpu)
        } catch {
            print("  \(backend.name): failed: \(error)")
        }
    }
    let medians = try interleavedMedians(contenders, repeats: repeats)
    let bareGflops = flops / medians[0] / 1e9
    print("\(shape.name)")
    for (index, (name, seconds)) in zip(names, medians).enumerated() {
        let gflops = flops / seconds / 1e9
        let ratio = index == 0 ? "" : "  ratio \(format(gflops / bareGflops, 2))"
        let share = onCPU[index] ? "  \(format(100 * gflops / fmaPeak.allCoresGflops))% peak" : ""
        print("  \(name.padding(toLength: 44))\(pad(format(gflops), 8)) GFLOP/s\(ratio)\(share)")
        if onCPU[index] && gflops > fmaPeak.allCoresGflops { gemmsAbovePeak.append("\(shape.name), \(name)") }
    }
}
if !gemmsAbovePeak.isEmpty {
    print("GEMM above the FMA peak (the peak loop is not this machine's limit): "
          + gemmsAbovePeak.joined(separator: "; "))
    exit(1)
}

extension String {
    func padding(toLength width: Int) -> String {
        count >= width ? String(prefix(width - 1)) + " " : self + String(repeating: " ", count: width - count)
    }
}

/// Median seconds of `repeats` runs after one warm-up run.
func median(repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var times: [Double] = []
    for _ in 0..<repeats {
        let start = now()
        try body()
        times.append(now() - start)
    }
    return times.sorted()[times.count / 2]
}
