import CBLAS

/// Bare OpenBLAS, for the benchmarks that compare the CPU backend with the library it wraps (CBLAS is a system
/// module and cannot be a product of its own).
public enum OpenBLAS {
    /// OpenBLAS's worker thread count (`openblas_set_num_threads`).
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

    /// OpenBLAS's name for the CPU core it optimised for, e.g. `Cooperlake`.
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Row-major `C = alpha·op(A)·op(B) + beta·C`, straight into `cblas_sgemm`.
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
