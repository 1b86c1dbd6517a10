#if canImport(Glibc)
import Glibc
#endif

/// Host staging for `uploadAsync`: plain memory; the CPU backend copies at once, so nothing is ever in flight.
final class CPUStagingBuffer: StagingBuffer {
    init(count: Int) {
        super.init(count: count, base: .allocate(byteCount: 4 * max(count, 1), alignment: 64))
    }

    deinit { base.deallocate() }
}

extension CPUBackend {
    public func makeStaging(_ count: Int) throws -> StagingBuffer {
        try requireSizes("makeStaging", ["count": count])
        return CPUStagingBuffer(count: count)
    }

    public func uploadAsync(_ staging: StagingBuffer, count: Int, to buffer: Buffer, offset: Int) throws {
        guard staging is CPUStagingBuffer else { preconditionFailure("a staging buffer of another backend") }
        guard count >= 0, count <= staging.count else {
            throw BackendError.invalidArgument("uploadAsync: count \(count) outside the staging area's \(staging.count)")
        }
        let destination = try range(buffer, offset: offset, count: count, "uploadAsync", "buffer")
        UnsafeMutableRawPointer(destination).copyMemory(from: staging.base, byteCount: 4 * count)
    }

    public func accumulateSum(_ x: Buffer, count: Int, squares: Bool, weights: [Double], into accumulators: Buffer,
                              flag: Int?, marker: Double) throws {
        let operation = "accumulateSum"
        try requireSizes(operation, ["count": count])
        guard weights.count <= DeviceFlag.maximumWeights else {
            throw BackendError.invalidArgument("\(operation): \(weights.count) weights, at most \(DeviceFlag.maximumWeights)")
        }
        let x = try range(x, count: count, operation, "x")
        let slots = try float64Range(accumulators, doubles: max(weights.count, flag.map { $0 + 2 } ?? 0), operation,
                                     "accumulators")
        if let flag, flag < 0 { throw BackendError.invalidArgument("\(operation): flag index \(flag) < 0") }
        // One chain per call, in order: the same sums whatever the thread count (bit-identical resume).
        let s = squares ? sumOfSquaresAsDouble(x, count) : sumAsDouble(x, count)
        for (j, weight) in weights.enumerated() where weight != 0 { slots[j] += weight * s }
        if let flag, !s.isFinite, slots[flag] == 0 || marker < slots[flag] {
            slots[flag] = marker
            slots[flag + 1] = s
        }
    }

    public func clipScale(_ x: Buffer, count: Int, squaredNorm accumulators: Buffer, index: Int, maxNorm: Double,
                          epsilon: Double) throws {
        let operation = "clipScale"
        try requireSizes(operation, ["count": count, "index": index])
        let x = try range(x, count: count, operation, "x")
        let coefficient = maxNorm / (try float64Range(accumulators, doubles: index + 1, operation,
                                                      "accumulators")[index].squareRoot() + epsilon)
        guard coefficient < 1 else { return }
        let factor = Float(coefficient)
        parallelChunks(count, costPerItem: 1) { elements in
            for i in elements { x[i] *= factor }
        }
    }
}
