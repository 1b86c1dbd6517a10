/// Batched small eigen-decompositions on the CPU: LAPACK's ssyevd per matrix, matrices split over the workers.
extension CPUBackend {
    public func uncheckedSymmetricEigen(_ a: Buffer, n: Int, batch: Int, values: Buffer, vectors: Buffer) throws {
        let op = "symmetricEigen"
        let matrices = pointer(a)
        let w = pointer(values)
        let v = pointer(vectors)
        guard batch > 0, n > 0 else { return }
        v.update(from: matrices, count: batch * n * n)
        // One slot per worker chunk for a failure (LAPACK only fails on a NaN input), so no lock is needed.
        let failures = UnsafeMutableBufferPointer<String?>.allocate(capacity: threads)
        failures.initialize(repeating: nil)
        defer { failures.deallocate() }
        parallelChunks(batch, costPerItem: n * n * n) { chunk, items in
            for b in items where failures[chunk] == nil {
                do { try LAPACK.ssyevd(n: n, v + b * n * n, w + b * n) } catch { failures[chunk] = "\(error)" }
            }
        }
        if let failure = failures.compactMap({ $0 }).first { throw BackendError.invalidArgument("\(op): \(failure)") }
    }
}
