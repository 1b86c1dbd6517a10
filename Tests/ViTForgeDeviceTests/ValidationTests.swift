import Testing
@testable import ViTForgeDevice

/// The device layer's one validation contract (`Backend`, `ArgumentCheck`): the same bad argument gets the same
/// one-line message from every backend, before anything runs; and the values inside index and label buffers, which
/// are device memory and not checked, give NaN (or are skipped) the same way on every backend.
@Suite struct ValidationTests {
    /// One bad call and the exact message every backend must throw for it.
    struct BadCall {
        let what: String
        let message: String
        let call: (any Backend, _ small: Buffer, _ large: Buffer) throws -> Void
    }

    /// `small` holds 37 elements, `large` 13·37.
    static let badCalls: [BadCall] = {
        var tooSmallC = GemmSpec(m: 13, n: 37, k: 1)
        tooSmallC.offsetC = 1
        var shortLda = GemmSpec(m: 13, n: 1, k: 7)
        shortLda.lda = 6
        var strideTooFar = GemmSpec(m: 1, n: 1, k: 13)
        strideTooFar.strideB = 13
        strideTooFar.batch = 3
        return [
            BadCall(what: "allocate a negative count", message: "allocate: count -1 is negative") { backend, _, _ in
                _ = try backend.allocate(-1)
            },
            BadCall(what: "upload past the end", message: "upload: buffer holds 37 elements, needs 38") { b, small, _ in
                try b.write([Float](repeating: 1, count: 7), to: small, offset: 31)
            },
            BadCall(what: "fill at a negative offset", message: "fill: buffer offset -1 is negative") { b, small, _ in
                try b.fill(small, value: 0, offset: -1, count: 3)
            },
            BadCall(what: "copy past the end of dst", message: "copy: dst holds 37 elements, needs 38") { b, small, large in
                try b.copy(large, srcOffset: 0, to: small, dstOffset: 1, count: 37)
            },
            BadCall(what: "copy onto itself, overlapping",
                    message: "copy: src [0, 5) and dst [3, 8) overlap in the same buffer") { b, small, _ in
                try b.copy(small, srcOffset: 0, to: small, dstOffset: 3, count: 5)
            },
            BadCall(what: "uploadAsync more than the staging area",
                    message: "uploadAsync: count 5 is more than the staging area's 4") { b, small, _ in
                try b.uploadAsync(try b.makeStaging(4), count: 5, to: small, offset: 0)
            },
            BadCall(what: "gemm, C one element short",
                    message: "gemm: C (m 13, n 37, k 1, lda 1, ldb 37, ldc 37) holds 481 elements, needs 482") { b, _, large in
                try b.gemm(tooSmallC, a: large, b: large, c: large)
            },
            BadCall(what: "gemm, lda shorter than a row of A",
                    message: "gemm: lda 6 is smaller than a stored row (7)") { b, _, large in
                try b.gemm(shortLda, a: large, b: large, c: large)
            },
            BadCall(what: "gemmStridedBatched, B's stride past its end",
                    message: "gemmStridedBatched: B (m 1, n 1, k 13, lda 13, ldb 1, ldc 1, batch 3) holds 37 elements, "
                        + "needs 39") { b, small, large in
                try b.gemmStridedBatched(strideTooFar, a: large, b: small, c: large)
            },
            BadCall(what: "addBias with rows × cols larger than x",
                    message: "addBias: x holds 37 elements, needs 74") { b, small, _ in
                try b.addBias(small, bias: small, rows: 2, cols: 37)
            },
            BadCall(what: "layerNormForward with negative rows",
                    message: "layerNormForward: rows -1 is negative") { b, small, _ in
                try b.layerNormForward(x: small, gamma: small, beta: small, out: small, mean: small, rstd: small,
                                       rows: -1, cols: 37, eps: 1e-6)
            },
            BadCall(what: "crossEntropyForward with too few labels",
                    message: "crossEntropyForward: labels holds 37 elements, needs 38") { b, small, large in
                try b.crossEntropyForward(logits: large, labels: small, probs: large, losses: large, rows: 38,
                                          classes: 1, smoothing: 0)
            },
            BadCall(what: "distillationForward at temperature 0",
                    message: "distillationForward: temperature 0.0 must be positive") { b, small, _ in
                try b.distillationForward(student: small, teacher: small, studentProbs: small, teacherProbs: small,
                                          losses: small, rows: 1, classes: 2, temperature: 0)
            },
            BadCall(what: "accumulateSum with nine weights",
                    message: "accumulateSum: 9 weights, at most 8") { b, small, large in
                try b.accumulateSum(small, count: 1, squares: false, weights: [Double](repeating: 1, count: 9),
                                    into: large, flag: nil, marker: 1)
            },
            BadCall(what: "adamwStep at step 0",
                    message: "adamwStep: step 0 must be ≥ 1 (it is 1-based)") { b, small, _ in
                try b.adamwStep(param: small, grad: small, m: small, v: small, mask: nil, count: 37,
                                hyper: AdamWHyperparameters(learningRate: 1e-3, step: 0))
            },
            BadCall(what: "gather into a short dst", message: "gather: dst holds 37 elements, needs 38") { b, small, large in
                try b.gather(src: small, indices: large, dst: small, count: 38)
            },
            BadCall(what: "segmentSum with too few offsets",
                    message: "segmentSum: offsets holds 37 elements, needs 38") { b, small, large in
                try b.segmentSum(small, offsets: small, members: small, dst: large, segments: 37)
            },
            BadCall(what: "gram with an out matrix too small",
                    message: "gram: out holds 37 elements, needs 49") { b, small, large in
                try b.gram(large, rows: 3, cols: 7, out: small)
            },
            BadCall(what: "symmetricEigen with a size overflowing",
                    message: "symmetricEigen: \(Int.max) × \(Int.max) × 1 elements overflow") { b, small, _ in
                try b.symmetricEigen(small, n: Int.max, batch: 1, values: small, vectors: small)
            },
        ]
    }()

    @Test("the same bad argument gives the same one-line message on every backend", arguments: TestBackends.all)
    func sameMessageEverywhere(backend: BackendUnderTest) throws {
        let device = backend.backend
        let small = try device.zeros(37), large = try device.zeros(13 * 37)
        for bad in Self.badCalls {
            do {
                try bad.call(device, small, large)
                Issue.record("\(bad.what): did not throw on \(backend.label)")
            } catch let error as BackendError {
                #expect(error == .invalidArgument(bad.message), "\(bad.what) on \(backend.label)")
            }
        }
    }

    @Test("out-of-range labels and indices give NaN or are skipped, the same on every backend",
          arguments: TestBackends.all)
    func deviceValuesContract(backend: BackendUnderTest) throws {
        let device = backend.backend
        let (rows, classes) = (3, 5)
        let logits = try device.makeBuffer((0 ..< rows * classes).map { Float($0 % 7) / 7 })
        let labels = try device.makeBuffer([Int32(2), -1, Int32(classes)])
        let probs = try device.zeros(rows * classes), losses = try device.zeros(rows)
        try device.crossEntropyForward(logits: logits, labels: labels, probs: probs, losses: losses, rows: rows,
                                       classes: classes, smoothing: 0.1)
        let loss = try device.read(losses)
        #expect(loss[0].isFinite && loss[1].isNaN && loss[2].isNaN, "losses \(loss) on \(backend.label)")
        let dLogits = try device.zeros(rows * classes)
        try device.crossEntropyBackward(probs: probs, labels: labels, dLogits: dLogits, rows: rows, classes: classes,
                                        smoothing: 0.1, scale: 1)
        let gradient = try device.read(dLogits)
        #expect(gradient[0 ..< classes].allSatisfy { $0.isFinite }, "row 0 of dLogits on \(backend.label)")
        #expect(gradient[classes...].allSatisfy { $0.isNaN }, "rows 1-2 of dLogits on \(backend.label)")

        let source = try device.makeBuffer([Float(1), 2, 3])
        let indices = try device.makeBuffer([Int32(2), -1, 3])
        let gathered = try device.zeros(3)
        try device.gather(src: source, indices: indices, dst: gathered, count: 3)
        let got = try device.read(gathered)
        #expect(got[0] == 3 && got[1].isNaN && got[2].isNaN, "gather \(got) on \(backend.label)")
        let target = try device.zeros(3)
        try device.scatterAdd(src: source, indices: indices, dst: target, count: 3)
        #expect(try device.read(target) == [0, 0, 1], "scatterAdd on \(backend.label)")

        // Segment 0 = src[0] + src[2]; segment 1 names member 7, outside src: NaN.
        let offsets = try device.makeBuffer([Int32(0), 2, 3])
        let members = try device.makeBuffer([Int32(0), 2, 7])
        let sums = try device.zeros(2)
        try device.segmentSum(source, offsets: offsets, members: members, dst: sums, segments: 2)
        let segments = try device.read(sums)
        #expect(segments[0] == 4 && segments[1].isNaN, "segmentSum \(segments) on \(backend.label)")
    }
}
