#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import ViTForgeDevice
import ViTForgeOpTable
import ViTForgeTestBasics

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

    @Test("the OpenCL backend is present when CI expects it (VITFORGE_EXPECT_OPENCL=1)",
          .enabled(if: getenv("VITFORGE_EXPECT_OPENCL").map { String(cString: $0) == "1" } ?? false,
                   "VITFORGE_EXPECT_OPENCL is not 1"))
    func openCLPresentWhenExpected() {
        #expect(TestBackends.all.contains { $0.backend.kind == .openCL },
                "VITFORGE_EXPECT_OPENCL=1 but TestBackends.all has no OpenCL backend (no device, or it failed to open)")
    }
}
