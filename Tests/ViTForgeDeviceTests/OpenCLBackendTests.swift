import Foundation
import Testing
@testable import ViTForgeDevice

/// OpenCL-specific checks, each operation against a plain float64 loop on the host. Serialized: every test shares
/// the one PoCL device, and the first one pays the kernel compilation.
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

    // MARK: Buffers

    @Test func uploadDownloadCopyFill() throws {
        let backend = try makeBackend()
        let data = values(37, seed: 1)
        let buffer = try backend.allocate(50)
        try backend.fill(buffer, value: -2, offset: 0, count: 50)
        try backend.write(data, to: buffer, offset: 13)
        var host = try backend.read(buffer)
        #expect(Array(host[13 ..< 50]) == data)
        #expect(host[0 ..< 13].allSatisfy { $0 == -2 })
        try backend.copy(buffer, srcOffset: 13, to: buffer, dstOffset: 0, count: 7)
        try backend.fill(buffer, value: 5, offset: 49, count: 1)
        host = try backend.read(buffer)
        #expect(Array(host[0 ..< 7]) == Array(data[0 ..< 7]) && host[7] == -2 && host[49] == 5)
        let labels: [Int32] = [3, -1, Int32.max]
        let labelBuffer = try backend.makeBuffer(labels)
        let raw = try backend.read(labelBuffer).map { $0.bitPattern }
        #expect(raw.map { Int32(bitPattern: $0) } == labels)
        #expect(throws: BackendError.self) { try backend.write([1, 2], to: buffer, offset: 49) }
        #expect(throws: BackendError.self) {
            try backend.copy(buffer, srcOffset: 0, to: buffer, dstOffset: 3, count: 5)
        }
        let empty = try backend.allocate(0)
        #expect(try backend.read(empty).isEmpty)
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

    @Test func gemmOddShapesTransposesOffsets() throws {
        let backend = try makeBackend()
        for transA in [false, true] {
            for transB in [false, true] {
                var spec = GemmSpec(m: 37, n: 13, k: 7, transA: transA, transB: transB, alpha: 0.75, beta: -0.5)
                spec.lda += 3
                spec.ldb += 1
                spec.ldc += 2
                spec.offsetA = 5
                spec.offsetB = 11
                spec.offsetC = 1
                try checkGemm(backend, spec, seed: 10, "gemm transA=\(transA) transB=\(transB)")
            }
        }
        // Strided batch, attention-like (Q·Kᵀ) with padding between matrices.
        var batched = GemmSpec(m: 13, n: 13, k: 7, transB: true, alpha: 0.5)
        batched.batch = 3
        batched.offsetA = 2
        batched.strideA = 13 * 7 + 4
        batched.strideB = 13 * 7 + 1
        batched.strideC = 13 * 13 + 3
        try checkGemm(backend, batched, seed: 20, "gemmStridedBatched")
        // k == 0: C = beta·C, on a strided batch with a padded ldc.
        var empty = GemmSpec(m: 5, n: 3, k: 0, beta: 0.5)
        empty.ldc = 4
        empty.batch = 2
        empty.strideC = 23
        try checkGemm(backend, empty, seed: 30, "gemm k=0")
        empty.beta = 0
        try checkGemm(backend, empty, seed: 31, "gemm k=0 beta=0")
        // m == 0: nothing happens, whatever the buffers.
        let tiny = try backend.zeros(1)
        try backend.gemm(GemmSpec(m: 0, n: 4, k: 4), a: tiny, b: tiny, c: tiny)
        #expect(throws: BackendError.self) {
            try backend.gemm(GemmSpec(m: 4, n: 4, k: 4), a: tiny, b: tiny, c: tiny)
        }
    }

    // MARK: Elementwise and rows

    @Test func elementwise() throws {
        let backend = try makeBackend()
        let rows = 13, cols = 37, count = rows * cols
        let x = values(count, seed: 2, scale: 3), y = values(count, seed: 3), bias = values(cols, seed: 4)
        let xBuffer = try backend.makeBuffer(x), yBuffer = try backend.makeBuffer(y)
        let biasBuffer = try backend.makeBuffer(bias)

        try backend.addBias(xBuffer, bias: biasBuffer, rows: rows, cols: cols)
        let biased = (0 ..< count).map { Double(x[$0]) + Double(bias[$0 % cols]) }
        expectClose(try backend.read(xBuffer), biased, "addBias")

        let dBias = try backend.makeBuffer(values(cols, seed: 5))
        let dBiasStart = values(cols, seed: 5)
        try backend.addBiasBackward(dOut: yBuffer, dBias: dBias, rows: rows, cols: cols)
        let dBiasExpected = (0 ..< cols).map { c in
            Double(dBiasStart[c]) + (0 ..< rows).reduce(0.0) { $0 + Double(y[$1 * cols + c]) }
        }
        expectClose(try backend.read(dBias), dBiasExpected, "addBiasBackward")

        let out = try backend.allocate(count)
        try backend.add(xBuffer, yBuffer, out: out, count: count)
        expectClose(try backend.read(out), (0 ..< count).map { biased[$0] + Double(y[$0]) }, "add")
        try backend.add(xBuffer, yBuffer, out: xBuffer, count: count)
        expectClose(try backend.read(xBuffer), (0 ..< count).map { biased[$0] + Double(y[$0]) }, "add aliased")

        try backend.axpy(alpha: -0.5, x: yBuffer, y: out, count: count - 3)
        let axpyExpected = (0 ..< count).map { biased[$0] + Double(y[$0]) * ($0 < count - 3 ? 0.5 : 1) }
        expectClose(try backend.read(out), axpyExpected, "axpy")
        try backend.scale(out, by: 3, count: count)
        expectClose(try backend.read(out), axpyExpected.map { $0 * 3 }, "scale")

        let indices: [Int32] = [5, 0, 480, 17, 3, 99, 200]
        let gathered = try backend.allocate(indices.count)
        try backend.gather(src: yBuffer, indices: try backend.makeBuffer(indices), dst: gathered, count: indices.count)
        expectClose(try backend.read(gathered), indices.map { Double(y[Int($0)]) }, "gather")
        let scatterTarget = try backend.makeBuffer(y)
        try backend.scatterAdd(src: gathered, indices: try backend.makeBuffer(indices), dst: scatterTarget,
                               count: indices.count)
        var scattered = y.map(Double.init)
        for index in indices { scattered[Int(index)] *= 2 }
        expectClose(try backend.read(scatterTarget), scattered, "scatterAdd")
        let outOfRange = try backend.allocate(1)
        try backend.gather(src: yBuffer, indices: try backend.makeBuffer([Int32(count)]), dst: outOfRange, count: 1)
        #expect(try backend.read(outOfRange)[0].isNaN)

        #expect(throws: BackendError.self) { try backend.add(xBuffer, yBuffer, out: gathered, count: count) }
    }

    @Test func layerNorm() throws {
        let backend = try makeBackend()
        let rows = 7, cols = 197, count = rows * cols, eps: Float = 1e-6
        // A large common offset: the one-pass variance formula would lose most digits here.
        let x = values(count, seed: 6, scale: 2).map { $0 + 100 }
        let gamma = values(cols, seed: 7), beta = values(cols, seed: 8), dOut = values(count, seed: 9)
        let xB = try backend.makeBuffer(x), gB = try backend.makeBuffer(gamma), bB = try backend.makeBuffer(beta)
        let outB = try backend.allocate(count), meanB = try backend.allocate(rows), rstdB = try backend.allocate(rows)
        try backend.layerNormForward(x: xB, gamma: gB, beta: bB, out: outB, mean: meanB, rstd: rstdB,
                                     rows: rows, cols: cols, eps: eps)
        var out = [Double](repeating: 0, count: count), dX = out, mean = [Double](), rstd = [Double]()
        var dGamma = [Double](repeating: 0.25, count: cols), dBeta = [Double](repeating: -0.25, count: cols)
        for r in 0 ..< rows {
            let row = (0 ..< cols).map { Double(x[r * cols + $0]) }
            let m = row.reduce(0, +) / Double(cols)
            let v = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(cols)
            let s = 1 / (v + Double(eps)).squareRoot()
            mean.append(m)
            rstd.append(s)
            var sumG = 0.0, sumGX = 0.0
            for c in 0 ..< cols {
                let xhat = (row[c] - m) * s
                out[r * cols + c] = xhat * Double(gamma[c]) + Double(beta[c])
                let g = Double(dOut[r * cols + c]) * Double(gamma[c])
                sumG += g
                sumGX += g * xhat
                dGamma[c] += Double(dOut[r * cols + c]) * xhat
                dBeta[c] += Double(dOut[r * cols + c])
            }
            for c in 0 ..< cols {
                let xhat = (row[c] - m) * s, g = Double(dOut[r * cols + c]) * Double(gamma[c])
                dX[r * cols + c] = 1 + s * (g - sumG / Double(cols) - xhat * sumGX / Double(cols))
            }
        }
        expectClose(try backend.read(outB), out, tolerance: 1e-4, "layerNormForward")
        expectClose(try backend.read(meanB), mean, "layerNorm mean")
        expectClose(try backend.read(rstdB), rstd, tolerance: 1e-4, "layerNorm rstd")
        let dXB = try backend.makeBuffer([Float](repeating: 1, count: count))
        let dGB = try backend.makeBuffer([Float](repeating: 0.25, count: cols))
        let dBB = try backend.makeBuffer([Float](repeating: -0.25, count: cols))
        try backend.layerNormBackward(dOut: try backend.makeBuffer(dOut), x: xB, gamma: gB, mean: meanB, rstd: rstdB,
                                      dX: dXB, dGamma: dGB, dBeta: dBB, rows: rows, cols: cols)
        expectClose(try backend.read(dXB), dX, tolerance: 1e-4, "layerNormBackward dX")
        expectClose(try backend.read(dGB), dGamma, tolerance: 1e-4, "layerNormBackward dGamma")
        expectClose(try backend.read(dBB), dBeta, "layerNormBackward dBeta")
    }

    @Test func softmax() throws {
        let backend = try makeBackend()
        let rows = 13, cols = 197, count = rows * cols, scale: Float = 0.125
        let x = values(count, seed: 10, scale: 200), dOut = values(count, seed: 11)
        var y = [Double](repeating: 0, count: count), dX = [Double](repeating: 0.5, count: count)
        for r in 0 ..< rows {
            let z = (0 ..< cols).map { Double(scale) * Double(x[r * cols + $0]) }
            let m = z.max()!
            let e = z.map { Foundation.exp($0 - m) }
            let total = e.reduce(0, +)
            for c in 0 ..< cols { y[r * cols + c] = e[c] / total }
            let dot = (0 ..< cols).reduce(0.0) { $0 + Double(dOut[r * cols + $1]) * y[r * cols + $1] }
            for c in 0 ..< cols {
                dX[r * cols + c] += Double(scale) * y[r * cols + c] * (Double(dOut[r * cols + c]) - dot)
            }
        }
        let xB = try backend.makeBuffer(x)
        try backend.softmaxForward(x: xB, out: xB, rows: rows, cols: cols, scale: scale)
        expectClose(try backend.read(xB), y, tolerance: 1e-6, "softmaxForward (aliased)")
        let dXB = try backend.makeBuffer([Float](repeating: 0.5, count: count))
        try backend.softmaxBackward(dOut: try backend.makeBuffer(dOut), out: xB, dX: dXB, rows: rows, cols: cols,
                                    scale: scale)
        expectClose(try backend.read(dXB), dX, tolerance: 1e-6, "softmaxBackward")
    }

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

    // MARK: Losses

    @Test func losses() throws {
        let backend = try makeBackend()
        let rows = 13, classes = 37, count = rows * classes, smoothing: Float = 0.1, scale: Float = 1 / 13
        let logits = values(count, seed: 14, scale: 30), teacher = values(count, seed: 15, scale: 8)
        let labels = (0 ..< rows).map { Int32(($0 * 7) % classes) }
        func logSoftmax(_ row: [Double]) -> [Double] {
            let m = row.max()!
            let lse = m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
            return row.map { $0 - lse }
        }
        var probs = [Double](), ceLosses = [Double](), dLogits = [Double]()
        for r in 0 ..< rows {
            let logP = logSoftmax((0 ..< classes).map { Double(logits[r * classes + $0]) })
            var loss = 0.0
            for c in 0 ..< classes {
                let target = (c == Int(labels[r]) ? 1 - Double(smoothing) : 0) + Double(smoothing) / Double(classes)
                loss -= target * logP[c]
                probs.append(Foundation.exp(logP[c]))
                dLogits.append(0.5 + Double(scale) * (Foundation.exp(logP[c]) - target))
            }
            ceLosses.append(loss)
        }
        let probsB = try backend.allocate(count), lossesB = try backend.allocate(rows)
        let labelsB = try backend.makeBuffer(labels)
        try backend.crossEntropyForward(logits: try backend.makeBuffer(logits), labels: labelsB, probs: probsB,
                                        losses: lossesB, rows: rows, classes: classes, smoothing: smoothing)
        expectClose(try backend.read(probsB), probs, tolerance: 1e-6, "crossEntropy probs")
        expectClose(try backend.read(lossesB), ceLosses, tolerance: 1e-6, "crossEntropy losses")
        let dLogitsB = try backend.makeBuffer([Float](repeating: 0.5, count: count))
        try backend.crossEntropyBackward(probs: probsB, labels: labelsB, dLogits: dLogitsB, rows: rows,
                                         classes: classes, smoothing: smoothing, scale: scale)
        expectClose(try backend.read(dLogitsB), dLogits, tolerance: 1e-6, "crossEntropyBackward")

        let temperature: Float = 3
        var ps = [Double](), pt = [Double](), klLosses = [Double](), dStudent = [Double]()
        for r in 0 ..< rows {
            let logPs = logSoftmax((0 ..< classes).map { Double(logits[r * classes + $0]) / Double(temperature) })
            let logPt = logSoftmax((0 ..< classes).map { Double(teacher[r * classes + $0]) / Double(temperature) })
            var kl = 0.0
            for c in 0 ..< classes {
                kl += Foundation.exp(logPt[c]) * (logPt[c] - logPs[c])
                ps.append(Foundation.exp(logPs[c]))
                pt.append(Foundation.exp(logPt[c]))
                dStudent.append(Double(scale * temperature) * (Foundation.exp(logPs[c]) - Foundation.exp(logPt[c])))
            }
            klLosses.append(Double(temperature * temperature) * kl)
        }
        let psB = try backend.allocate(count), ptB = try backend.allocate(count)
        try backend.distillationForward(student: try backend.makeBuffer(logits), teacher: try backend.makeBuffer(teacher),
                                        studentProbs: psB, teacherProbs: ptB, losses: lossesB, rows: rows,
                                        classes: classes, temperature: temperature)
        expectClose(try backend.read(psB), ps, tolerance: 1e-6, "distillation ps")
        expectClose(try backend.read(ptB), pt, tolerance: 1e-6, "distillation pt")
        expectClose(try backend.read(lossesB), klLosses, tolerance: 1e-5, "distillation losses")
        let dStudentB = try backend.zeros(count)
        try backend.distillationBackward(studentProbs: psB, teacherProbs: ptB, dStudent: dStudentB, rows: rows,
                                         classes: classes, temperature: temperature, scale: scale)
        expectClose(try backend.read(dStudentB), dStudent, tolerance: 1e-6, "distillationBackward")
    }

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

    // MARK: Statistics, reductions, optimizer, SVD steps

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

    @Test func adamw() throws {
        let backend = try makeBackend()
        let count = 37
        let param = values(count, seed: 40), grad = values(count, seed: 41, scale: 0.1)
        let m = values(count, seed: 42, scale: 0.01), v = values(count, seed: 43, scale: 0.001).map { abs($0) }
        let mask: [Float] = (0 ..< count).map { $0 % 5 == 2 ? 0 : 1 }
        let hyper = AdamWHyperparameters(learningRate: 1e-3, weightDecay: 0.05, step: 7)
        var expectedParam = [Double](), expectedM = [Double](), expectedV = [Double]()
        for i in 0 ..< count {
            if mask[i] == 0 {
                expectedParam.append(Double(param[i])); expectedM.append(Double(m[i])); expectedV.append(Double(v[i]))
                continue
            }
            let b1 = Double(hyper.beta1), b2 = Double(hyper.beta2), lr = Double(hyper.learningRate)
            let g = Double(grad[i])
            let mi = b1 * Double(m[i]) + (1 - b1) * g, vi = b2 * Double(v[i]) + (1 - b2) * g * g
            let mHat = mi / (1 - Foundation.pow(b1, 7)), vHat = vi / (1 - Foundation.pow(b2, 7))
            var p = Double(param[i]) * (1 - lr * Double(hyper.weightDecay))
            p -= lr * mHat / (vHat.squareRoot() + Double(hyper.eps))
            expectedParam.append(p); expectedM.append(mi); expectedV.append(vi)
        }
        let pB = try backend.makeBuffer(param), mB = try backend.makeBuffer(m), vB = try backend.makeBuffer(v)
        try backend.adamwStep(param: pB, grad: try backend.makeBuffer(grad), m: mB, v: vB,
                              mask: try backend.makeBuffer(mask), count: count, hyper: hyper)
        expectClose(try backend.read(pB), expectedParam, tolerance: 1e-6, "adamw param")
        expectClose(try backend.read(mB), expectedM, tolerance: 1e-6, "adamw m")
        expectClose(try backend.read(vB), expectedV, tolerance: 1e-6, "adamw v")
        let unmasked = try backend.makeBuffer(param)
        try backend.adamwStep(param: unmasked, grad: try backend.makeBuffer(grad), m: try backend.makeBuffer(m),
                              v: try backend.makeBuffer(v), mask: nil, count: count, hyper: hyper)
        #expect(try backend.read(unmasked)[2] != param[2])
    }

    @Test func gramAndMatVec() throws {
        let backend = try makeBackend()
        let rows = 37, cols = 13
        let a = values(rows * cols, seed: 50), x = values(cols, seed: 51), xt = values(rows, seed: 52)
        let aB = try backend.makeBuffer(a)
        let gramB = try backend.allocate(cols * cols)
        try backend.gram(aB, rows: rows, cols: cols, out: gramB)
        var gram = [Double](repeating: 0, count: cols * cols)
        for i in 0 ..< cols {
            for j in 0 ..< cols {
                gram[i * cols + j] = (0 ..< rows).reduce(0.0) { $0 + Double(a[$1 * cols + i]) * Double(a[$1 * cols + j]) }
            }
        }
        expectClose(try backend.read(gramB), gram, tolerance: 2e-6, "gram")
        let yB = try backend.allocate(rows), ytB = try backend.allocate(cols)
        try backend.matVec(aB, rows: rows, cols: cols, x: try backend.makeBuffer(x), y: yB, transposed: false)
        try backend.matVec(aB, rows: rows, cols: cols, x: try backend.makeBuffer(xt), y: ytB, transposed: true)
        expectClose(try backend.read(yB),
                    (0 ..< rows).map { r in (0 ..< cols).reduce(0.0) { $0 + Double(a[r * cols + $1]) * Double(x[$1]) } },
                    tolerance: 1e-6, "matVec")
        expectClose(try backend.read(ytB),
                    (0 ..< cols).map { c in (0 ..< rows).reduce(0.0) { $0 + Double(a[$1 * cols + c]) * Double(xt[$1]) } },
                    tolerance: 1e-6, "matVec transposed")
    }
}

/// Kernel timings at DeiT-Tiny batch-64 shapes; run with `VITFORGE_OPENCL_TIMINGS=1 swift test --filter OpenCLTimings`.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["VITFORGE_OPENCL_TIMINGS"] != nil))
struct OpenCLTimings {
    @Test func kernelTimings() throws {
        let device = try #require(try OpenCLRuntime.devices().first)
        let backend = try OpenCLBackend(device: device)
        func time(_ label: String, _ body: () throws -> Void) throws {
            try body()
            try backend.synchronize()
            var samples: [Double] = []
            for _ in 0 ..< 5 {
                let start = DispatchTime.now().uptimeNanoseconds
                try body()
                try backend.synchronize()
                samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
            samples.sort()
            print("timing \(label): median \(String(format: "%.2f", samples[2])) ms")
        }
        let tokens = 12608, width = 192, hidden = 768, attentionRows = 37824, sequence = 197
        let x = try backend.makeBuffer((0 ..< tokens * hidden).map { Float($0 % 97) * 0.05 - 2.4 })
        let out = try backend.allocate(tokens * hidden)
        let bias = try backend.zeros(hidden)
        try time("biasGeluForward 12608x768") { try backend.biasGeluForward(x: x, bias: bias, out: out, rows: tokens, cols: hidden) }
        try time("biasGeluBackward 12608x768") {
            try backend.biasGeluBackward(dOut: x, x: x, bias: bias, dX: out, rows: tokens, cols: hidden)
        }
        try time("addBias 12608x768") { try backend.addBias(out, bias: bias, rows: tokens, cols: hidden) }
        try time("addBiasBackward 12608x768") { try backend.addBiasBackward(dOut: x, dBias: bias, rows: tokens, cols: hidden) }
        try time("softmaxForward 37824x197") {
            try backend.softmaxForward(x: x, out: out, rows: attentionRows, cols: sequence, scale: 0.125)
        }
        try time("softmaxBackward 37824x197") {
            try backend.softmaxBackward(dOut: x, out: out, dX: out, rows: attentionRows, cols: sequence, scale: 0.125)
        }
        let gamma = try backend.zeros(width), mean = try backend.allocate(tokens), rstd = try backend.allocate(tokens)
        try time("layerNormForward 12608x192") {
            try backend.layerNormForward(x: x, gamma: gamma, beta: gamma, out: out, mean: mean, rstd: rstd,
                                         rows: tokens, cols: width, eps: 1e-6)
        }
        try time("layerNormBackward 12608x192") {
            try backend.layerNormBackward(dOut: x, x: x, gamma: gamma, mean: mean, rstd: rstd, dX: out,
                                          dGamma: bias, dBeta: bias, rows: tokens, cols: width)
        }
        let count = 5_717_000  // DeiT-Tiny parameters
        let param = try backend.zeros(count), m = try backend.zeros(count), v = try backend.zeros(count)
        try time("adamwStep 5.7M") {
            try backend.adamwStep(param: param, grad: x, m: m, v: v, mask: nil, count: count,
                                  hyper: AdamWHyperparameters(learningRate: 1e-3, step: 1))
        }
        try time("sumOfSquares 5.7M") { _ = try backend.sumOfSquares(x, count: count) }
        try time("gemm fc1 12608x192->768") {
            try backend.gemm(GemmSpec(m: tokens, n: hidden, k: width), a: x, b: x, c: out)
        }
    }
}
