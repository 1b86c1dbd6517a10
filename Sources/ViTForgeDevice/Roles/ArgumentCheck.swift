import ViTForgeSupport
/// The argument checks of one device-layer call, made by the roles' checked entry points (`addBias` …) before the
/// backend's implementation (`uncheckedAddBias` …) runs. This is the one place the device layer checks arguments:
/// the backends implement only the unchecked calls, so every backend refuses a bad argument before doing
/// anything and with the same one-line message, `<operation>: <what is wrong>` (`ValidationTests` holds them to
/// it). What is checked here is what the host knows: sizes, offsets, buffer bounds, scalar arguments. The values
/// inside index and label buffers are device memory and are not checked (see `Backend`'s contract for them).
struct ArgumentCheck {
    let operation: String

    /// Checks that every named size is ≥ 0 (0 is valid and does nothing).
    init(_ operation: String, _ sizes: KeyValuePairs<String, Int> = [:]) throws {
        self.operation = operation
        OperationTimeline.enter(operation)  // every public operation starts here (`bench --profile`)
        for (name, value) in sizes where value < 0 { throw fail("\(name) \(value) is negative") }
    }

    func fail(_ message: String) -> BackendError { .invalidArgument("\(operation): \(message)") }

    func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw fail(message()) }
    }

    /// The product of sizes already checked to be ≥ 0, or an error when it overflows.
    func product(_ factors: Int...) throws -> Int {
        var result = 1
        for factor in factors {
            let (next, overflow) = result.multipliedReportingOverflow(by: factor)
            if overflow { throw fail("\(factors.map(String.init).joined(separator: " × ")) elements overflow") }
            result = next
        }
        return result
    }

    /// Elements `offset ..< offset + count` must lie inside `buffer`.
    func buffer(_ buffer: Buffer, _ label: String, offset: Int = 0, count: Int) throws {
        try require(offset >= 0, "\(label) offset \(offset) is negative")
        try require(count >= 0, "\(label) count \(count) is negative")
        let (end, overflow) = offset.addingReportingOverflow(count)
        try require(!overflow && end <= buffer.count,
                    "\(label) holds \(buffer.count) elements, needs \(overflow ? "\(offset) + \(count)" : "\(end)")")
    }

    /// `buffer(_:_:count:)` for each (buffer, label, elements from 0).
    func buffers(_ operands: (Buffer, String, Int)...) throws {
        for (buffer, label, count) in operands { try self.buffer(buffer, label, count: count) }
    }

    /// A copy within one buffer must not overlap itself.
    func disjoint(_ src: Buffer, _ srcOffset: Int, _ dst: Buffer, _ dstOffset: Int, count: Int) throws {
        guard src === dst, count > 0 else { return }
        try require(srcOffset + count <= dstOffset || dstOffset + count <= srcOffset,
                    "src [\(srcOffset), \(srcOffset + count)) and dst [\(dstOffset), \(dstOffset + count)) overlap "
                        + "in the same buffer")
    }

    /// Sizes, leading dimensions, offsets, strides and buffer bounds of a (strided batch of) GEMM. Returns false
    /// when there is nothing to compute (m, n or batch is 0), true when the backend should run it.
    func gemm(_ spec: GemmSpec, a: Buffer, b: Buffer, c: Buffer) throws -> Bool {
        _ = try ArgumentCheck(operation, ["m": spec.m, "n": spec.n, "k": spec.k, "batch": spec.batch,
                                      "offsetA": spec.offsetA, "offsetB": spec.offsetB, "offsetC": spec.offsetC,
                                      "strideA": spec.strideA, "strideB": spec.strideB, "strideC": spec.strideC])
        // Row-major leading dimensions must cover a stored row (and be ≥ 1, as BLAS requires).
        let rowA = spec.transA ? spec.m : spec.k
        let rowB = spec.transB ? spec.k : spec.n
        for (name, ld, row) in [("lda", spec.lda, rowA), ("ldb", spec.ldb, rowB), ("ldc", spec.ldc, spec.n)] {
            try require(ld >= max(1, row), "\(name) \(ld) is smaller than a stored row (\(row))")
        }
        guard spec.m > 0, spec.n > 0, spec.batch > 0 else { return false }
        var shape = "m \(spec.m), n \(spec.n), k \(spec.k), lda \(spec.lda), ldb \(spec.ldb), ldc \(spec.ldc)"
        if spec.batch != 1 { shape += ", batch \(spec.batch)" }
        try buffer(c, "C (\(shape))", count: spec.extentC)
        // With k = 0 the product is empty (C = beta·C) and A and B are not read.
        if spec.k > 0 {
            try buffer(a, "A (\(shape))", count: spec.extentA)
            try buffer(b, "B (\(shape))", count: spec.extentB)
        }
        return true
    }

    /// The head widths of a fused attention call; returns its rows (batch·tokens) and log-sum-exp elements
    /// (heads·batch·tokens).
    func attention(_ layout: QKVLayout, batch: Int, tokens: Int) throws -> (rows: Int, scores: Int) {
        for head in 0 ..< layout.heads {
            try require(layout.qkDims[head] >= 0 && layout.vDims[head] >= 0, "head \(head) has a negative width")
        }
        return (try product(batch, tokens), try product(layout.heads, batch, tokens))
    }
}
