import COpenCL

/// Gram matrices (one GEMM), matrix-vector products (`Kernels/svd.cl`) and batched symmetric eigen-decompositions
/// (`Kernels/eigen.cl`).
extension OpenCLBackend {
    // MARK: Gram matrices and matrix-vector products

    public func uncheckedGram(_ a: Buffer, rows: Int, cols: Int, out: Buffer) throws {
        // Aᵀ·A as one GEMM (op(A) = Aᵀ, B = A): Ssyrk would halve the flops but is one more CLBlast program to
        // compile, and it fills only one triangle.
        try gemm(GemmSpec(m: cols, n: cols, k: rows, transA: true), a: a, b: a, c: out)
    }

    public func uncheckedMatVec(_ a: Buffer, rows: Int, cols: Int, x: Buffer, y: Buffer, transposed: Bool) throws {
        try launch(transposed ? .matVecTransposed : .matVec, global: transposed ? cols : rows, [
            .buffer(clMemory(a)), try .int(rows), try .int(cols), .buffer(clMemory(x)), .buffer(clMemory(y)),
        ])
    }

    /// Jacobi sweeps at most: float32 Jacobi converges quadratically, 6 to 10 sweeps for n = 64 in practice;
    /// the kernel stops earlier once the off-diagonal mass is at roundoff.
    static let eigenSweeps = 30

    public func uncheckedSymmetricEigen(_ a: Buffer, n: Int, batch: Int, values: Buffer, vectors: Buffer) throws {
        // The kernel's limit, not an argument check: one work-group holds a whole matrix's rotations.
        guard n <= 256 else { throw BackendError.unsupported("symmetricEigen: n = \(n) is above the kernel's 256") }
        // Exactly one work-group per matrix: dimension 0 is the group's work-items (the kernel's own local size,
        // which a device may cap below `localSize`), dimension 1 the matrix. The kernel cannot leave surplus groups
        // out by returning early: PoCL miscompiles barriers after a group-dependent return.
        guard let kernel = kernels[.symmetricEigen] else {
            throw BackendError.unsupported("symmetric_eigen is not available on \(device.name)")
        }
        let local = try launchLock.withLock { try localSize(.symmetricEigen, kernel) }
        try launch(.symmetricEigen, columns: local, rows: batch, [
            .buffer(clMemory(a)), try .int(n), try .int(Self.eigenSweeps),
            .buffer(clMemory(values)),
            .buffer(clMemory(vectors)),
        ])
    }
}
