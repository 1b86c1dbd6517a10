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
    public func uncheckedMakeStaging(_ count: Int) throws -> StagingBuffer {
        return CPUStagingBuffer(count: count)
    }

    public func uncheckedUploadAsync(_ staging: StagingBuffer, count: Int, to buffer: Buffer, offset: Int) throws {
        guard staging is CPUStagingBuffer else { preconditionFailure("a staging buffer of another backend") }
        let destination = pointer(buffer) + offset
        UnsafeMutableRawPointer(destination).copyMemory(from: staging.base, byteCount: 4 * count)
    }

    public func uncheckedAccumulateSum(_ x: Buffer, count: Int, squares: Bool, weights: [Double],
                                       into accumulators: Buffer, flag: Int?, marker: Double) throws {
        let x = pointer(x)
        let slots = float64s(accumulators)
        // One chain per call, in order: the same sums whatever the thread count (bit-identical resume).
        let s = squares ? sumOfSquaresAsDouble(x, count) : sumAsDouble(x, count)
        for (j, weight) in weights.enumerated() where weight != 0 { slots[j] += weight * s }
        if let flag, !s.isFinite, slots[flag] == 0 || marker < slots[flag] {
            slots[flag] = marker
            slots[flag + 1] = s
        }
    }

    public func uncheckedClipScale(_ x: Buffer, count: Int, squaredNorm accumulators: Buffer, index: Int,
                                   maxNorm: Double, epsilon: Double) throws {
        let x = pointer(x)
        let coefficient = maxNorm / (float64s(accumulators)[index].squareRoot() + epsilon)
        guard coefficient < 1 else { return }
        let factor = Float(coefficient)
        parallelChunks(count, costPerItem: 1) { elements in
            for i in elements { x[i] *= factor }
        }
    }
}
