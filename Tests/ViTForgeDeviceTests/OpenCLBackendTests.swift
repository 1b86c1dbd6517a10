import Foundation
import Testing
@testable import ViTForgeDevice

/// OpenCL-specific checks (runtime, kernel builds and caches, argument caching) and the operation cases the op table
/// (`BackendOpTests`) does not reach: GEMM edge sizes, GELU's far tail, column statistics of a mean 10⁵ times the
/// spread, bad labels in both kernel shapes. Each against a plain float64 loop on the host. Serialized: every test
/// shares the one PoCL device, and the first one pays the kernel compilation.
@Suite(.serialized)
struct OpenCLBackendTests {
    static let device: OpenCLDeviceInfo? = try? OpenCLRuntime.devices().first
    /// Why a test that needs a device skipped (CI sets VITFORGE_EXPECT_OPENCL=1, and BackendOpTests then fails).
    static let noDevice: Comment = "no OpenCL device (no ICD, or PoCL without a writable cache): nothing to build on"

    func makeBackend() throws -> OpenCLBackend {
        guard let device = Self.device else { throw BackendError.noOpenCLDevice("no OpenCL device in this test run") }
        return try OpenCLBackend(device: device)
    }

    /// Deterministic values in [-scale, scale).
    func values(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0 ..< count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    func expectClose(_ actual: [Float], _ expected: [Double], tolerance: Double = 1e-5,
                     _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(actual.count == expected.count, "\(what): count", sourceLocation: sourceLocation)
        var worst = 0.0, worstIndex = 0
        for (index, (a, e)) in zip(actual, expected).enumerated() {
            let error = abs(Double(a) - e) / max(1, abs(e))
            if !(error <= worst) { worst = error; worstIndex = index }
        }
        #expect(worst <= tolerance,
                "\(what): worst error \(worst) at \(worstIndex): \(actual[worstIndex]) vs \(expected[worstIndex])",
                sourceLocation: sourceLocation)
    }

    // MARK: Runtime

    @Test func enumerationFindsADevice() throws {
        let devices = try OpenCLRuntime.devices()
        #expect(!devices.isEmpty)
        let first = try #require(devices.first)
        #expect(first.spec == "opencl:\(first.platformIndex).\(first.deviceIndex)")
        #expect(!first.name.isEmpty && first.computeUnits > 0 && first.globalMemoryBytes > 0)
        if first.platformName == "Portable Computing Language" { #expect(first.type == .cpu) }
        let backend = try makeBackend()
        #expect(backend.name.hasPrefix("opencl:0.0 "))
        #expect(backend.kind == .openCL)
    }

    @Test(.enabled(if: OpenCLBackendTests.device != nil, OpenCLBackendTests.noDevice))
    func kernelBuildFailureIsOneLine() throws {
        let device = try #require(Self.device)
        let broken = [(name: "broken.cl", source: "__kernel void f(__global float* x) {\n  x[0] = y;\n}\n")]
        do {
            _ = try OpenCLBackend(device: device, kernelSources: broken)
            Issue.record("a broken kernel built")
        } catch let error as BackendError {
            guard case .kernelBuild = error else { Issue.record("unexpected \(error)"); return }
            let text = error.description
            #expect(!text.contains("\n"))
            #expect(text.contains("broken.cl:2"), "\(text)")
            #expect(text.contains("error"), "\(text)")
        }
    }

    @Test(.enabled(if: OpenCLBackendTests.device != nil, OpenCLBackendTests.noDevice))
    func kernelDirectoryOverrideIsRead() throws {
        let device = try #require(Self.device)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-kernels-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "__kernel void f(__global float* x) { x[0] = undefined_name; }\n"
            .write(to: folder.appendingPathComponent("tensor.cl"), atomically: true, encoding: .utf8)
        setenv("VITFORGE_KERNEL_DIR", folder.path, 1)
        defer { unsetenv("VITFORGE_KERNEL_DIR") }
        #expect {
            _ = try OpenCLBackend(device: device)
        } throws: { error in
            guard let error = error as? BackendError, case .kernelBuild = error else { return false }
            return error.description.contains("tensor.cl:1")
        }
    }

    /// A kernel launched again on the same buffers and sizes sets no argument; a new buffer (even one allocated
    /// where a released one was) or a new size sets exactly the arguments that changed, and results stay right.
    @Test(.enabled(if: OpenCLBackendTests.device != nil, OpenCLBackendTests.noDevice))
    func kernelArgumentsAreSetOnlyWhenTheyChange() throws {
        let backend = try makeBackend()
        let (rows, cols) = (7, 13)
        let bias = try backend.makeBuffer(values(cols, seed: 2))
        let first = try backend.makeBuffer(values(rows * cols, seed: 1))
        try backend.addBias(first, bias: bias, rows: rows, cols: cols)
        let before = backend.kernelArgumentsSet
        try backend.addBias(first, bias: bias, rows: rows, cols: cols)
        #expect(backend.kernelArgumentsSet == before, "the same launch again set arguments")
        // A fresh buffer in place of `first`: one argument changes.
        let xValues = values(rows * cols, seed: 3), biasValues = values(cols, seed: 2)
        let second = try backend.makeBuffer(xValues)
        try backend.addBias(second, bias: bias, rows: rows, cols: cols)
        #expect(backend.kernelArgumentsSet == before + 1)
        let got = try backend.read(second)
        expectClose(got, (0 ..< rows * cols).map { Double(xValues[$0]) + Double(biasValues[$0 % cols]) },
                    "addBias on a new buffer")
        // Fewer rows: only the size changes, and rows past it are left alone.
        try backend.addBias(second, bias: bias, rows: rows - 2, cols: cols)
        #expect(backend.kernelArgumentsSet == before + 2)
        let twice = try backend.read(second)
        expectClose(twice, (0 ..< rows * cols).map {
            Double(xValues[$0]) + Double(biasValues[$0 % cols]) * ($0 < (rows - 2) * cols ? 2 : 1)
        }, "addBias with fewer rows")
    }

    @Test func diskCacheEntryIsReadBackAndCorruptionIgnored() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vitforge-cache-\(getpid())")
        defer { try? FileManager.default.removeItem(at: folder) }
        setenv("VITFORGE_CACHE_DIR", folder.path, 1)
        defer { unsetenv("VITFORGE_CACHE_DIR") }
        let store = try #require(KernelBinaryStore())
        let payload: [UInt8] = Array(0 ..< 200).map { UInt8($0) }
        store.save(payload, key: 42)
        #expect(store.load(key: 42) == payload)
        // Flip one payload byte: the checksum no longer matches, so the entry is ignored.
        let path = store.path(key: 42)
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[100] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(store.load(key: 42) == nil)
        try Data(bytes.prefix(30)).write(to: URL(fileURLWithPath: path))
        #expect(store.load(key: 42) == nil)
    }

    // MARK: GEMM

    func referenceGemm(_ spec: GemmSpec, a: [Float], b: [Float], c: [Float]) -> [Double] {
        var result = c.map(Double.init)
        for batch in 0 ..< spec.batch {
            for i in 0 ..< spec.m {
                for j in 0 ..< spec.n {
                    var total = 0.0
                    for p in 0 ..< spec.k {
                        let ai = spec.offsetA + batch * spec.strideA + (spec.transA ? p * spec.lda + i : i * spec.lda + p)
                        let bi = spec.offsetB + batch * spec.strideB + (spec.transB ? j * spec.ldb + p : p * spec.ldb + j)
                        total += Double(a[ai]) * Double(b[bi])
                    }
                    let ci = spec.offsetC + batch * spec.strideC + i * spec.ldc + j
                    result[ci] = Double(spec.alpha) * total + Double(spec.beta) * Double(c[ci])
                }
            }
        }
        return result
    }

    func checkGemm(_ backend: OpenCLBackend, _ spec: GemmSpec, seed: UInt64, _ what: String) throws {
        let a = values(spec.extentA + 3, seed: seed), b = values(spec.extentB + 2, seed: seed + 1)
        let c = values(spec.extentC + 5, seed: seed + 2)
        let aBuffer = try backend.makeBuffer(a), bBuffer = try backend.makeBuffer(b), cBuffer = try backend.makeBuffer(c)
        if spec.batch == 1 {
            try backend.gemm(spec, a: aBuffer, b: bBuffer, c: cBuffer)
        } else {
            try backend.gemmStridedBatched(spec, a: aBuffer, b: bBuffer, c: cBuffer)
        }
        expectClose(try backend.read(cBuffer), referenceGemm(spec, a: a, b: b, c: c), tolerance: 2e-6, what)
    }

    /// The edge sizes the op table has no row for (it checks the four transposes with padding and offsets, strided
    /// batches, and k = 0 with β 0.5 on one matrix): k = 0 on a strided batch with β 0.5 and β 0 (C = β·C), m = 0
    /// (nothing happens, whatever the buffers), and a buffer of no elements.
    @Test func gemmAndBufferEdgeSizes() throws {
        let backend = try makeBackend()
        var empty = GemmSpec(m: 5, n: 3, k: 0, beta: 0.5)
        empty.ldc = 4
        empty.batch = 2
        empty.strideC = 23
        try checkGemm(backend, empty, seed: 30, "gemm k=0")
        empty.beta = 0
        try checkGemm(backend, empty, seed: 31, "gemm k=0 beta=0")
        let tiny = try backend.zeros(1)
        try backend.gemm(GemmSpec(m: 0, n: 4, k: 4), a: tiny, b: tiny, c: tiny)
        #expect(try backend.read(tiny) == [0])
        let nothing = try backend.allocate(0)
        #expect(try backend.read(nothing).isEmpty)
    }

    // MARK: Rows (what the op table does not reach)

    @Test func biasGelu() throws {
        let backend = try makeBackend()
        let rows = 7, cols = 301, count = rows * cols
        // Spans the left tail (where 1 + erf would cancel) and the saturated right side.
        let x = (0 ..< count).map { Float(-12 + 24 * Double($0) / Double(count - 1)) }
        let bias = values(cols, seed: 12, scale: 0.01), dOut = values(count, seed: 13)
        var out = [Double](), dX = [Double]()
        for i in 0 ..< count {
            let u = Double(x[i] + bias[i % cols])
            let cdf = 0.5 * Foundation.erfc(-u / 2.0.squareRoot())
            out.append(u * cdf)
            dX.append(-1 + (cdf + u * Foundation.exp(-0.5 * u * u) / (2 * Double.pi).squareRoot()) * Double(dOut[i]))
        }
        let outB = try backend.allocate(count), biasB = try backend.makeBuffer(bias), xB = try backend.makeBuffer(x)
        try backend.biasGeluForward(x: xB, bias: biasB, out: outB, rows: rows, cols: cols)
        let got = try backend.read(outB)
        expectClose(got, out, tolerance: 3e-7, "biasGeluForward")
        // Relative accuracy in the left tail, where the values are tiny.
        for i in 0 ..< count where out[i] < -1e-30 {
            #expect(abs(Double(got[i]) - out[i]) <= 2e-6 * abs(out[i]), "gelu tail at \(x[i]): \(got[i]) vs \(out[i])")
        }
        let dXB = try backend.makeBuffer([Float](repeating: -1, count: count))
        try backend.biasGeluBackward(dOut: try backend.makeBuffer(dOut), x: xB, bias: biasB, dX: dXB, rows: rows,
                                     cols: cols)
        expectClose(try backend.read(dXB), dX, tolerance: 3e-7, "biasGeluBackward")
    }

    // MARK: Losses with bad labels

    /// A label outside [0, classes) cannot be checked on the host without reading the labels back, so the kernels
    /// poison that row instead: its loss and its dLogits are NaN, in both kernel shapes; the other rows and every
    /// row's probabilities are as with valid labels.
    @Test(.enabled(if: OpenCLBackendTests.device != nil, OpenCLBackendTests.noDevice),
          arguments: OpenCLKernelShape.allCases)
    func labelsOutOfRangeGiveNaN(shape: OpenCLKernelShape) throws {
        let device = try #require(Self.device)
        let backend = try OpenCLBackend(device: device, kernelShape: shape)
        let rows = 7, classes = 197, count = rows * classes
        let logits = values(count, seed: 60, scale: 5)
        let valid = (0 ..< rows).map { Int32(($0 * 31) % classes) }
        var labels = valid
        labels[1] = Int32(classes)
        labels[4] = -1
        let logitsB = try backend.makeBuffer(logits)
        func forward(_ labels: [Int32]) throws -> (probs: [Float], losses: [Float], dLogits: [Float]) {
            let labelsB = try backend.makeBuffer(labels)
            let probsB = try backend.allocate(count), lossesB = try backend.allocate(rows)
            try backend.crossEntropyForward(logits: logitsB, labels: labelsB, probs: probsB, losses: lossesB,
                                            rows: rows, classes: classes, smoothing: 0.1)
            let dLogitsB = try backend.zeros(count)
            try backend.crossEntropyBackward(probs: probsB, labels: labelsB, dLogits: dLogitsB, rows: rows,
                                             classes: classes, smoothing: 0.1, scale: 1)
            return (try backend.read(probsB), try backend.read(lossesB), try backend.read(dLogitsB))
        }
        let good = try forward(valid), bad = try forward(labels)
        #expect(bad.probs == good.probs)
        for r in 0 ..< rows {
            let poisoned = r == 1 || r == 4
            #expect(bad.losses[r].isNaN == poisoned, "row \(r) loss \(bad.losses[r]) on \(backend.name)")
            if !poisoned { #expect(bad.losses[r] == good.losses[r] && good.losses[r].isFinite) }
            let row = bad.dLogits[r * classes ..< (r + 1) * classes]
            #expect(poisoned ? row.allSatisfy(\.isNaN) : row.allSatisfy(\.isFinite), "row \(r) dLogits")
        }
    }

    // MARK: Statistics and reductions

    @Test func statisticsAndReductions() throws {
        let backend = try makeBackend()
        let cols = 13, batches = [7, 37, 1]
        // A mean far from zero next to a small spread: float32 Σx² − (Σx)² would return garbage.
        let all = batches.enumerated().map { values($1 * cols, seed: 16 + UInt64($0)).map { $0 * 0.01 + 1000 } }
        let state = try backend.zeros(ColumnStatistics.stateCount(cols))
        var merged = 0
        for batch in all {
            try backend.columnStatisticsAccumulate(x: try backend.makeBuffer(batch), rows: batch.count / cols,
                                                   cols: cols, state: state, countBefore: merged)
            merged += batch.count / cols
        }
        // The state is float64 mean[cols] then M2[cols]; its users (VBP) read it as doubles.
        let stateValues = try backend.float64Values(state, doubles: 2 * cols)
        let rowsOfAll = all.flatMap { $0 }
        var mean = [Double](), variance = [Double]()
        for c in 0 ..< cols {
            let column = stride(from: c, to: rowsOfAll.count, by: cols).map { Double(rowsOfAll[$0]) }
            let m = column.reduce(0, +) / Double(column.count)
            mean.append(m)
            variance.append(column.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(column.count))
        }
        for c in 0 ..< cols {
            #expect(abs(stateValues[c] - mean[c]) <= 1e-12 * abs(mean[c]), "mean \(c)")
            let gotVariance = stateValues[cols + c] / Double(merged)
            #expect(abs(gotVariance - variance[c]) <= 1e-8 * variance[c], "variance \(c)")
        }

        let x = values(100_003, seed: 30)
        let xB = try backend.makeBuffer(x)
        let sum = x.reduce(0.0) { $0 + Double($1) }, squares = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(abs(try backend.sum(xB, count: x.count) - sum) < 1e-9)
        #expect(abs(try backend.sumOfSquares(xB, count: x.count) - squares) < 1e-9 * squares)
        #expect(try backend.sum(xB, count: 5) == x.prefix(5).reduce(0.0) { $0 + Double($1) })
        #expect(try backend.sum(xB, count: 0) == 0)
    }

}
