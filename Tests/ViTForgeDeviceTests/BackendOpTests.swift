#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import ViTForgeDevice
import ViTForgeOpTable
import ViTForgeTestSupport

// Every operation of `Backend`, on every backend in `TestBackends.all`, against the float64 `Reference`: the rows
// of `OpCase.table` (the ViTForgeOpTable target, which the `op-table` executable runs too; see there how to add one).

extension OpCase: CustomTestStringConvertible {
    public var testDescription: String { name }
}

// MARK: The tests

@Suite("Backend operations")
struct BackendOpTests {
    @Test("operation matches the float64 reference", arguments: TestBackends.all, OpCase.table)
    func matchesReference(backend: BackendUnderTest, row: OpCase) throws {
        for check in try row.check(on: backend.backend) {
            #expect(check.passed, """
                \(row.name) on \(backend.label): \(check.output) normalised error \(check.error) > \(check.tolerance) \
                (index \(check.worstIndex): got \(check.got), expected \(check.expected); seed \(row.seed))
                """)
        }
    }

    @Test("reference backward matches finite differences of the reference forward",
          arguments: OpCase.table)
    func referenceGradients(row: OpCase) throws {
        let op = try row.prepared()
        var generator = SeededGenerator(seed: row.seed ^ 0xFD)
        for check in op.gradientChecks {
            try #require(check.analytic.count == check.input.count, "\(row.name): \(check.name) has the wrong size")
            // A sample of coordinates keeps this fast in debug builds; every one is a full forward pass.
            let coordinates = generator.distinctIndices(min(16, check.input.count), below: check.input.count)
            let h = 1e-6
            var largest = 0.0
            for value in check.analytic { largest = max(largest, abs(value)) }
            var worst = 0.0
            for i in coordinates {
                var plus = check.input
                var minus = check.input
                plus[i] += h
                minus[i] -= h
                let numeric = (check.loss(plus) - check.loss(minus)) / (2 * h)
                worst = max(worst, abs(numeric - check.analytic[i]))
            }
            #expect(largest > 0, "\(row.name): \(check.name) is all zero, which proves nothing")
            let error = worst / max(largest, .leastNormalMagnitude)
            #expect(error <= Tolerance.finiteDifference, """
                \(row.name): reference \(check.name) differs from finite differences by \(error) (seed \(row.seed))
                """)
        }
    }

    // With only CPU backends there is nothing to compare: the argument list is empty and the trait says why.
    @Test("other backends agree with the CPU backend on the same inputs",
          .enabled(if: !TestBackends.others.isEmpty, "only the CPU backend is available"),
          arguments: TestBackends.others, OpCase.table)
    func backendsAgree(other: BackendUnderTest, row: OpCase) throws {
        let op = try row.prepared()
        let onCPU = try op.run(TestBackends.cpu)
        let onOther = try op.run(other.backend)
        for ((cpuValues, otherValues), expected) in zip(zip(onCPU, onOther), op.expected) {
            // Relative to the reference's scale, the same measure as in `matchesReference`.
            let (error, worst) = normalizedError(otherValues, cpuValues, relativeTo: expected.values)
            let tolerance = Tolerance.betweenBackends(expected.tolerance)
            #expect(error <= tolerance, """
                \(row.name): \(other.label) differs from the CPU in \(expected.name) by \(error) > \(tolerance) \
                (index \(worst); seed \(row.seed))
                """)
        }
    }

    @Test("sizes, offsets and indices outside the buffers throw invalidArgument", arguments: TestBackends.all)
    func invalidArgumentsThrow(backend: BackendUnderTest) throws {
        let device = backend.backend
        let small = try device.zeros(37)
        let large = try device.zeros(13 * 37)
        let labels = try device.makeBuffer([Int32(0), 37])
        let outOfRange = try device.makeBuffer([Int32(3), -1])
        var tooSmallC = GemmSpec(m: 13, n: 37, k: 1)
        tooSmallC.offsetC = 1
        var shortLda = GemmSpec(m: 13, n: 1, k: 7)
        shortLda.lda = 6
        var strideTooFar = GemmSpec(m: 1, n: 1, k: 13)
        strideTooFar.strideB = 13
        strideTooFar.batch = 3
        var calls: [(String, () throws -> Void)] = [
            ("gemm, C one element short", { try device.gemm(tooSmallC, a: large, b: large, c: large) }),
            ("gemm, lda shorter than a row of A", { try device.gemm(shortLda, a: large, b: large, c: large) }),
            ("gemmStridedBatched, B's stride past its end",
             { try device.gemmStridedBatched(strideTooFar, a: large, b: small, c: large) }),
            ("upload past the end", { try device.write([Float](repeating: 1, count: 7), to: small, offset: 31) }),
            ("copy past the end of dst", { try device.copy(large, srcOffset: 0, to: small, dstOffset: 1, count: 37) }),
            ("fill at a negative offset", { try device.fill(small, value: 0, offset: -1, count: 3) }),
            ("addBias with rows × cols larger than x", { try device.addBias(small, bias: small, rows: 2, cols: 37) }),
            ("layerNormForward with negative rows", {
                try device.layerNormForward(x: small, gamma: small, beta: small, out: small, mean: small, rstd: small,
                                            rows: -1, cols: 37, eps: 1e-6)
            }),
        ]
        // The values inside index and label buffers are checked where they are host memory. On a device they are
        // device memory, and checking them would cost a download per call, so the OpenCL kernels bound-check each
        // index instead (an out-of-range gather reads NaN, scatterAdd skips it) — see OpenCLBackendTests.
        if device.kind == .cpu {
            calls += [
                ("crossEntropyForward with a label equal to classes", {
                    try device.crossEntropyForward(logits: large, labels: labels, probs: large, losses: small, rows: 2,
                                                   classes: 37, smoothing: 0)
                }),
                ("gather with a negative index", { try device.gather(src: small, indices: outOfRange, dst: small, count: 2) }),
                ("scatterAdd with an index past dst", {
                    try device.scatterAdd(src: small, indices: labels, dst: small, count: 2)
                }),
            ]
        }
        for (what, call) in calls {
            do {
                try call()
                Issue.record("\(what): did not throw on \(backend.label)")
            } catch let error as BackendError {
                guard case .invalidArgument = error else {
                    Issue.record("\(what): threw \(error) instead of invalidArgument on \(backend.label)")
                    continue
                }
            }
        }
    }

    @Test("the OpenCL backend is present when CI expects it (VITFORGE_EXPECT_OPENCL=1)",
          .enabled(if: getenv("VITFORGE_EXPECT_OPENCL").map { String(cString: $0) == "1" } ?? false,
                   "VITFORGE_EXPECT_OPENCL is not 1"))
    func openCLPresentWhenExpected() {
        #expect(TestBackends.all.contains { $0.backend.kind == .openCL },
                "VITFORGE_EXPECT_OPENCL=1 but TestBackends.all has no OpenCL backend (no device, or it failed to open)")
    }
}
