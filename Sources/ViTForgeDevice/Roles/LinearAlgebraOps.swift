/// A role of `Backend`: small dense linear algebra for the pruning methods.
public protocol LinearAlgebraOps: DeviceMemory {
    /// The implementation behind `gram`, its arguments already checked.
    func uncheckedGram(_ a: Buffer, rows: Int, cols: Int, out: Buffer) throws

    /// The implementation behind `matVec`, its arguments already checked.
    func uncheckedMatVec(_ a: Buffer, rows: Int, cols: Int, x: Buffer, y: Buffer, transposed: Bool) throws

    /// The implementation behind `symmetricEigen`, its arguments already checked.
    func uncheckedSymmetricEigen(_ a: Buffer, n: Int, batch: Int, values: Buffer, vectors: Buffer) throws
}

/// The checked entry points: every argument check of the device layer, made once here for every backend (see
/// `ArgumentCheck`).
extension LinearAlgebraOps {
    /// Gram matrix `out = Aᵀ·A` (cols × cols) of a [rows, cols].
    public func gram(_ a: Buffer, rows: Int, cols: Int, out: Buffer) throws {
        let check = try ArgumentCheck("gram", ["rows": rows, "cols": cols])
        try check.buffers((a, "a", check.product(rows, cols)), (out, "out", check.product(cols, cols)))
        try uncheckedGram(a, rows: rows, cols: cols, out: out)
    }

    /// `y = A·x` (a [rows, cols], x [cols], y [rows]) or, transposed, `y = Aᵀ·x` (x [rows], y [cols]).
    public func matVec(_ a: Buffer, rows: Int, cols: Int, x: Buffer, y: Buffer, transposed: Bool) throws {
        let check = try ArgumentCheck("matVec", ["rows": rows, "cols": cols])
        try check.buffers((a, "a", check.product(rows, cols)), (x, "x", transposed ? rows : cols),
                          (y, "y", transposed ? cols : rows))
        try uncheckedMatVec(a, rows: rows, cols: cols, x: x, y: y, transposed: transposed)
    }

    /// Eigen-decomposition of `batch` symmetric n×n matrices `a` [batch, n, n] (overwritten): `values` [batch, n]
    /// ascending, `vectors` [batch, n, n] with row i the unit eigenvector of values[i] (LAPACK `ssyevd` per matrix
    /// on the CPU; on OpenCL a work-group per matrix runs parallel cyclic Jacobi, n ≤ 256). Vulcan's TNNR
    /// decomposes every attention head's d×d Gram matrix with one call per step.
    public func symmetricEigen(_ a: Buffer, n: Int, batch: Int, values: Buffer, vectors: Buffer) throws {
        let check = try ArgumentCheck("symmetricEigen", ["n": n, "batch": batch])
        let count = try check.product(n, n, batch)
        try check.buffers((a, "a", count), (values, "values", n * batch), (vectors, "vectors", count))
        try uncheckedSymmetricEigen(a, n: n, batch: batch, values: values, vectors: vectors)
    }
}
