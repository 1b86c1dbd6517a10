import COpenCL

/// Gram matrices (one GEMM), matrix-vector products (`Kernels/svd.cl`) and batched symmetric eigen-decompositions
/// (`Kernels/eigen.cl`).
extension OpenCLBackend {
    // MARK: Gram matrices and matrix-vector products

    public func gram(_ a: Buffer, rows: Int, cols: Int, out: Buffer) throws {
        _ = try size(rows, cols, "gram")
        _ = try checked(a, "gram", "a", count: rows * cols)
        _ = try checked(out, "gram", "out", count: cols * cols)
        // Aᵀ·A as one GEMM (op(A) = Aᵀ, B = A): Ssyrk would halve the flops but is one more CLBlast program to
        // compile, and it fills only one triangle.
        try gemm(GemmSpec(m: cols, n: cols, k: rows, transA: true), a: a, b: a, c: out)
    }

    public func matVec(_ a: Buffer, rows: Int, cols: Int, x: Buffer, y: Buffer, transposed: Bool) throws {
        let op = "matVec"
        let count = try size(rows, cols, op)
        try launch(transposed ? .matVecTransposed : .matVec, global: transposed ? cols : rows, [
            .buffer(try checked(a, op, "a", count: count)), try .int(rows), try .int(cols),
            .buffer(try checked(x, op, "x", count: transposed ? rows : cols)),
            .buffer(try checked(y, op, "y", count: transposed ? cols : rows)),
        ])
    }

    /// Jacobi sweeps at most: float32 Jacobi converges quadratically, 6 to 10 sweeps for n = 64 in practice;
    /// the kernel stops earlier once the off-diagonal mass is at roundoff.
    static let eigenSweeps = 30

    public func symmetricEigen(_ a: Buffer, n: Int, batch: Int, values: Buffer, vectors: Buffer) throws {
        let op = "symmetricEigen"
        let count = try size(n * n, batch, op)
        guard n <= 256 else { throw BackendError.invalidArgument("\(op): n = \(n) is above the kernel's 256") }
        // Exactly one work-group per matrix: dimension 0 is the group's work-items (the kernel's own local size,
        // which a device may cap below `localSize`), dimension 1 the matrix. The kernel cannot leave surplus groups
        // out by returning early: PoCL miscompiles barriers after a group-dependent return.
        guard let kernel = kernels[.symmetricEigen] else {
            throw BackendError.unsupported("symmetric_eigen is not available on \(device.name)")
        }
        let local = try launchLock.withLock { try localSize(.symmetricEigen, kernel) }
        try launch(.symmetricEigen, columns: local, rows: batch, [
            .buffer(try checked(a, op, "a", count: count)), try .int(n), try .int(Self.eigenSweeps),
            .buffer(try checked(values, op, "values", count: n * batch)),
            .buffer(try checked(vectors, op, "vectors", count: count)),
        ])
    }
}
