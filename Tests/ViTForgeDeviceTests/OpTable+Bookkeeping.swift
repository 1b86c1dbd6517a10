@testable import ViTForgeDevice
import ViTForgeTestBasics

// Rows for the operations a training step uses instead of host round trips: uploads from a staging area, sums added
// into float64 accumulators on the device (with the non-finite flag), clipping by a device-held norm, and AdamW
// skipping its update while a flag is set.

extension OpCase {
    static let bookkeeping: [OpCase] = [
        OpCase("uploadAsync of 1001 floats and 37 Int32 from staging areas, at offsets") { rng in
            let floats = rng.values(1001)
            let labels = (0 ..< 37).map { _ in Int.random(in: 0 ..< 1000, using: &rng) }
            let initial = rng.values(1013)
            var expected = initial
            expected.replaceSubrange(7 ..< 1008, with: floats)
            return PreparedOp(
                expected: [ExpectedOutput("floats at offset 7", expected, Tolerance.exact),
                           ExpectedOutput("Int32 at offset 5", labels.map(Double.init), Tolerance.exact),
                           ExpectedOutput("a second upload from the reused area", floats.reversed(), Tolerance.exact)],
                run: { backend in
                    let staging = try backend.makeStaging(1001)
                    let labelStaging = try backend.makeStaging(41)
                    for (i, value) in floats.enumerated() { staging.floats[i] = Float(value) }
                    for (i, label) in labels.enumerated() { labelStaging.int32s[i] = Int32(label) }
                    let destination = try backend.buffer(initial)
                    let labelDestination = try backend.zeros(50)
                    try backend.uploadAsync(staging, count: floats.count, to: destination, offset: 7)
                    try backend.uploadAsync(labelStaging, count: labels.count, to: labelDestination, offset: 5)
                    let first = try backend.values(destination)
                    let integers = try backend.read(labelDestination).map { Int32(bitPattern: $0.bitPattern) }
                    // The owner's rule: wait, then write the area again for the next upload.
                    try staging.waitForUpload()
                    for (i, value) in floats.reversed().enumerated() { staging.floats[i] = Float(value) }
                    let second = try backend.zeros(1001)
                    try backend.uploadAsync(staging, count: floats.count, to: second, offset: 0)
                    try staging.waitForUpload()
                    return [first, integers[5 ..< 5 + labels.count].map(Double.init), try backend.values(second)]
                })
        },
        // Weights 0 must leave their accumulator alone (slot 1 starts at 7), the others accumulate over two calls.
        OpCase("accumulateSum of 1001 and 37 values into float64 accumulators, weights with a zero") { rng in
            let x = rng.values(1001, in: 2 ... 4)
            let y = rng.values(37)
            let start = [0.25, 7, -1, 0, 0]
            let weights = [1.0 / 1001, 0, 1001.0 / 3, 1]
            var expected = start
            let sumX = Reference.sum(x), squaresY = Reference.sumOfSquares(y)
            for (j, w) in weights.enumerated() where w != 0 { expected[j] += w * sumX + w * squaresY }
            return PreparedOp(
                expected: [ExpectedOutput("accumulators", expected, Tolerance.float64)],
                run: { backend in
                    let accumulators = try backend.float64Buffer(start)
                    try backend.accumulateSum(backend.buffer(x), count: x.count, squares: false, weights: weights,
                                              into: accumulators, flag: nil, marker: 0)
                    try backend.accumulateSum(backend.buffer(y), count: y.count, squares: true, weights: weights,
                                              into: accumulators, flag: nil, marker: 0)
                    return [try backend.float64Values(accumulators, doubles: start.count)]
                })
        },
        // Markers 5 (NaN), 3 (Inf: smaller, replaces it), 9 (NaN: larger, ignored), a finite sum (no change).
        OpCase("accumulateSum flags the smallest marker of a non-finite sum") { rng in
            let finite = rng.values(197)
            var withNaN = rng.values(197)
            withNaN[101] = .nan
            var withInfinity = rng.values(61)
            withInfinity[60] = .infinity
            return PreparedOp(
                expected: [ExpectedOutput("flag after NaN at 5", [5, 1], Tolerance.exact),
                           ExpectedOutput("flag after Inf at 3, NaN at 9, finite at 1", [3, 1, 0], Tolerance.exact)],
                run: { backend in
                    let accumulators = try backend.zeros(2 * 4)
                    func add(_ values: [Double], _ marker: Double) throws {
                        try backend.accumulateSum(backend.buffer(values), count: values.count, squares: false,
                                                  weights: [1], into: accumulators, flag: 2, marker: marker)
                    }
                    try add(withNaN, 5)
                    let afterNaN = try backend.float64Values(accumulators, doubles: 4)
                    try add(withInfinity, 3)
                    try add(withNaN, 9)
                    try add(finite, 1)
                    let after = try backend.float64Values(accumulators, doubles: 4)
                    return [[afterNaN[2], afterNaN[3].isNaN ? 1 : 0],
                            [after[2], after[3] == .infinity ? 1 : 0, after[0].isNaN ? 0 : 1]]
                })
        },
        clipRow(maxNorm: 0.5),
        clipRow(maxNorm: 1e3),
        OpCase("adamwStep 1001 elements skips everything while the flag is set, runs when it is 0") { rng in
            let count = 1001
            let hyper = AdamWHyperparameters(learningRate: 0.01, weightDecay: 0.05, step: 3)
            let param = rng.values(count), grad = rng.values(count)
            let m = rng.values(count, in: -0.1 ... 0.1), v = rng.values(count, in: 0 ... 0.01)
            let reference = Reference.adamwStep(param: param, grad: grad, m: m, v: v, mask: nil, hyper: hyper)
            return PreparedOp(
                expected: [ExpectedOutput("param, m, v with the flag set", param + m + v, Tolerance.exact),
                           ExpectedOutput("param, m, v with the flag 0", reference.param + reference.m + reference.v,
                                          Tolerance.elementwise)],
                run: { backend in
                    var results: [[Double]] = []
                    for marker in [4.0, 0] {
                        let buffers = try [param, m, v].map { try backend.buffer($0) }
                        let flags = try backend.float64Buffer([0, marker])
                        try backend.adamwStep(param: buffers[0], grad: backend.buffer(grad), m: buffers[1],
                                              v: buffers[2], mask: nil, count: count, hyper: hyper,
                                              skipWhen: DeviceFlag(buffer: flags, index: 1))
                        results.append(try buffers.flatMap { try backend.values($0) })
                    }
                    return results
                })
        },
    ]

    /// Two tensors clipped to a global norm of `maxNorm`: scaled by maxNorm/(‖g‖ + 1e-6) when that is below 1,
    /// untouched otherwise.
    static func clipRow(maxNorm: Double) -> OpCase {
        OpCase("clipScale of 1001 + 37 elements to a global norm of \(maxNorm)") { rng in
            let a = rng.values(1001), b = rng.values(37, in: -3 ... 3)
            let norm = (Reference.sumOfSquares(a) + Reference.sumOfSquares(b)).squareRoot()
            let coefficient = maxNorm / (norm + 1e-6)
            let factor = coefficient < 1 ? Double(Float(coefficient)) : 1
            return PreparedOp(
                expected: [ExpectedOutput("a", a.map { Double(Float($0) * Float(factor)) }, Tolerance.elementwise),
                           ExpectedOutput("b", b.map { Double(Float($0) * Float(factor)) }, Tolerance.elementwise),
                           ExpectedOutput("Σ g²", [norm * norm], Tolerance.float64)],
                run: { backend in
                    let accumulators = try backend.zeros(2)
                    let tensors = try [(backend.buffer(a), a.count), (backend.buffer(b), b.count)]
                    for (tensor, count) in tensors {
                        try backend.accumulateSum(tensor, count: count, squares: true, weights: [1],
                                                  into: accumulators, flag: nil, marker: 0)
                    }
                    for (tensor, count) in tensors {
                        try backend.clipScale(tensor, count: count, squaredNorm: accumulators, index: 0,
                                              maxNorm: maxNorm, epsilon: 1e-6)
                    }
                    return try tensors.map { try backend.values($0.0) }
                        + [backend.float64Values(accumulators, doubles: 1)]
                })
        }
    }
}

extension Backend {
    /// A buffer holding `values` as float64 (2 elements each), the accumulators' layout.
    func float64Buffer(_ values: [Double]) throws -> Buffer {
        let floats = values.flatMap { value -> [Float] in
            let bits = value.bitPattern
            return [Float(bitPattern: UInt32(truncatingIfNeeded: bits)), Float(bitPattern: UInt32(bits >> 32))]
        }
        return try makeBuffer(floats)
    }
}
