import CBLAS
import CLAPACK

/// LAPACK from the OpenBLAS the CPU backend links (the Fortran routines, column-major), wrapped for row-major
/// matrices. Used by `CPUBackend.symmetricEigen`, by host-side float64 linear algebra (Vulcan's effective ranks and
/// SVD surgery) and by tests as the reference the OpenCL kernels are checked against.
public enum LAPACK {
    /// Eigen-decomposition of the symmetric n×n matrix `a` (row-major; only its symmetric part matters): values
    /// ascending, and `vectors` [n, n] with row i the unit eigenvector of values[i].
    public static func symmetricEigen(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        var vectors = a  // symmetric: row-major = column-major
        var values = [Double](repeating: 0, count: n)
        try vectors.withUnsafeMutableBufferPointer { matrix in
            try values.withUnsafeMutableBufferPointer { w in
                try dsyevd(n: n, matrix.baseAddress!, w.baseAddress!)
            }
        }
        return (values, vectors)
    }

    /// The float32 routine on one n×n matrix in place (`a` becomes the eigenvector rows, `w` the values).
    static func ssyevd(n: Int, _ a: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>) throws {
        try syevd(n: n, a, w, name: "ssyevd") { ssyevd_($0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10) }
    }

    static func dsyevd(n: Int, _ a: UnsafeMutablePointer<Double>, _ w: UnsafeMutablePointer<Double>) throws {
        try syevd(n: n, a, w, name: "dsyevd") { dsyevd_($0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10) }
    }

    typealias SyevdRoutine<T> = (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafePointer<Int32>,
                                 UnsafeMutablePointer<T>, UnsafePointer<Int32>, UnsafeMutablePointer<T>,
                                 UnsafeMutablePointer<T>, UnsafePointer<Int32>, UnsafeMutablePointer<Int32>,
                                 UnsafePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void

    /// ?syevd with jobz = 'V', uplo = 'U': a workspace query, then the decomposition.
    private static func syevd<T: BinaryFloatingPoint>(n: Int, _ a: UnsafeMutablePointer<T>, _ w: UnsafeMutablePointer<T>,
                                                      name: String, _ routine: SyevdRoutine<T>) throws {
        guard n > 0 else { return }
        var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "U"))
        var size = Int32(n), lda = Int32(n), info: Int32 = 0
        var lwork: Int32 = -1, liwork: Int32 = -1, workSize: T = 0, iworkSize: Int32 = 0
        routine(&jobz, &uplo, &size, a, &lda, w, &workSize, &lwork, &iworkSize, &liwork, &info)
        lwork = Int32(workSize)
        liwork = iworkSize
        var work = [T](repeating: 0, count: Int(max(lwork, 1)))
        var iwork = [Int32](repeating: 0, count: Int(max(liwork, 1)))
        routine(&jobz, &uplo, &size, a, &lda, w, &work, &lwork, &iwork, &liwork, &info)
        if info != 0 { throw BackendError.invalidArgument("\(name): info \(info) (n = \(n))") }
    }

    /// Thin SVD of the row-major m×n matrix `a`: `a = u·diag(s)·vt` with u [m, k], s [k] descending, vt [k, n],
    /// k = min(m, n) (dgesdd).
    public static func svd(_ a: [Double], rows m: Int, cols n: Int) throws -> (u: [Double], s: [Double], vt: [Double]) {
        let k = min(m, n)
        guard k > 0 else { return ([], [], []) }
        // Row-major a is column-major aᵀ (n×m): aᵀ = v·s·uᵀ, so LAPACK's u (n×k, column-major) is our vtᵀ stored
        // column-major = vt row-major, and its vt (k×m, column-major) is uᵀ column-major = u row-major.
        var matrix = a
        var s = [Double](repeating: 0, count: k)
        var vtRowMajor = [Double](repeating: 0, count: n * k)  // LAPACK's u of aᵀ
        var uRowMajor = [Double](repeating: 0, count: k * m)   // LAPACK's vt of aᵀ
        var jobz = Int8(UInt8(ascii: "S"))
        var rows = Int32(n), cols = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(k), info: Int32 = 0
        var lwork: Int32 = -1, workSize: Double = 0
        var iwork = [Int32](repeating: 0, count: 8 * k)
        dgesdd_(&jobz, &rows, &cols, &matrix, &lda, &s, &vtRowMajor, &ldu, &uRowMajor, &ldvt, &workSize, &lwork,
                &iwork, &info)
        lwork = Int32(workSize)
        var work = [Double](repeating: 0, count: Int(max(lwork, 1)))
        dgesdd_(&jobz, &rows, &cols, &matrix, &lda, &s, &vtRowMajor, &ldu, &uRowMajor, &ldvt, &work, &lwork,
                &iwork, &info)
        if info != 0 { throw BackendError.invalidArgument("dgesdd: info \(info) (\(m)×\(n))") }
        // vtRowMajor is column-major n×k: element (j, i) at i·n + j is vt[i][j] row-major ✓; uRowMajor is
        // column-major k×m: element (i, r) at r·k + i is u[r][i] row-major ✓.
        return (uRowMajor, s, vtRowMajor)
    }

    /// Singular values (descending) of the row-major m×n float32 matrix `a` (sgesdd, no vectors).
    public static func singularValues(_ a: [Float], rows m: Int, cols n: Int) throws -> [Float] {
        let k = min(m, n)
        guard k > 0 else { return [] }
        var matrix = a
        var s = [Float](repeating: 0, count: k)
        var jobz = Int8(UInt8(ascii: "N"))
        var rows = Int32(n), cols = Int32(m), lda = Int32(n), one: Int32 = 1, info: Int32 = 0
        var lwork: Int32 = -1, workSize: Float = 0, dummy: Float = 0, dummyV: Float = 0
        var iwork = [Int32](repeating: 0, count: 8 * k)
        sgesdd_(&jobz, &rows, &cols, &matrix, &lda, &s, &dummy, &one, &dummyV, &one, &workSize, &lwork, &iwork, &info)
        lwork = Int32(workSize)
        var work = [Float](repeating: 0, count: Int(max(lwork, 1)))
        sgesdd_(&jobz, &rows, &cols, &matrix, &lda, &s, &dummy, &one, &dummyV, &one, &work, &lwork, &iwork, &info)
        if info != 0 { throw BackendError.invalidArgument("sgesdd: info \(info) (\(m)×\(n))") }
        return s
    }

    /// Solves `a·X = B` for the symmetric positive definite n×n matrix `a` (row-major; only its upper triangle is
    /// read) and `columns` right-hand sides given as the rows of `bRows` ([columns, n] row-major, i.e. Bᵀ): returns
    /// Xᵀ [columns, n] row-major, or nil when `a` is not numerically positive definite (dposv's Cholesky failed), so
    /// that the caller decides how to regularise rather than receive a garbage solution.
    public static func solvePositiveDefinite(_ a: [Double], n: Int, bRows: [Double], columns: Int) throws -> [Double]? {
        guard a.count == n * n, bRows.count == n * columns else {
            throw BackendError.invalidArgument("dposv: \(a.count) and \(bRows.count) elements for n = \(n), "
                                               + "\(columns) right-hand sides")
        }
        guard n > 0, columns > 0 else { return bRows }
        // Row-major symmetric a is its own column-major form; Bᵀ row-major [columns, n] is B column-major (n×columns).
        var factor = a, solution = bRows
        var uplo = CChar(UInt8(ascii: "U"))
        var size = Int32(n), nrhs = Int32(columns), lda = Int32(n), ldb = Int32(n), info: Int32 = 0
        dposv_(&uplo, &size, &nrhs, &factor, &lda, &solution, &ldb, &info)
        if info > 0 { return nil }
        if info != 0 { throw BackendError.invalidArgument("dposv: info \(info) (n = \(n))") }
        return solution
    }

    /// Row-major float64 `C = op(A)·op(B)` (m×n, op(A) m×k, op(B) k×n) through OpenBLAS's dgemm: the host-side
    /// products of the pruning layer's float64 least squares.
    public static func multiply(_ a: [Double], _ b: [Double], m: Int, n: Int, k: Int, transA: Bool = false,
                                transB: Bool = false) -> [Double] {
        precondition(a.count == m * k && b.count == k * n, "multiply: \(a.count), \(b.count) for \(m)×\(k)·\(k)×\(n)")
        var c = [Double](repeating: 0, count: m * n)
        guard m > 0, n > 0, k > 0 else { return c }
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(transA ? m : k), b, Int32(transB ? k : n), 0, &c,
                    Int32(n))
        return c
    }
}
