import ViTForgeDevice

/// A small row-major float64 matrix for the host-side linear algebra of Vulcan's budget and surgery.
public struct Matrix64: Equatable, Sendable {
    public var rows: Int, cols: Int
    public var values: [Double]

    public init(rows: Int, cols: Int, values: [Double]? = nil) {
        self.rows = rows
        self.cols = cols
        self.values = values ?? [Double](repeating: 0, count: rows * cols)
    }

    public subscript(i: Int, j: Int) -> Double {
        get { values[i * cols + j] }
        set { values[i * cols + j] = newValue }
    }

    /// The SVD of `Aᵀ·B` ((A.cols)×(B.cols), rank ≤ min(A.rows, B.rows)) without forming it: with the thin SVDs
    /// `A = Pa·Sa·Qaᵀ`, `B = Pb·Sb·Qbᵀ`, `Aᵀ·B = Qa·(Sa·Paᵀ·Pb·Sb)·Qbᵀ`, and the small core's SVD `X·Σ·Yᵀ` gives
    /// `u = Qa·X` [A.cols, k], `s = Σ` [k] descending, `vt = (Qb·Y)ᵀ` [k, B.cols], k = min(A.rows, B.rows).
    /// Costs O(D·d²) instead of O(D³) for the (D+1)×(D+1) product.
    public static func productSVD(_ a: Matrix64, _ b: Matrix64) throws -> (u: Matrix64, s: [Double], vt: Matrix64) {
        guard a.rows == b.rows else {
            throw PruneError.planMismatch("Aᵀ·B of \(a.rows)×\(a.cols) and \(b.rows)×\(b.cols): inner sizes differ")
        }
        let svdA = try LAPACK.svd(a.values, rows: a.rows, cols: a.cols)
        let svdB = try LAPACK.svd(b.values, rows: b.rows, cols: b.cols)
        let ka = min(a.rows, a.cols), kb = min(b.rows, b.cols)
        // core = Sa·Paᵀ·Pb·Sb: Pa [a.rows, ka], Pb [b.rows, kb]; Aᵀ·B needs a.rows == b.rows (shared inner dim).
        var core = Matrix64(rows: ka, cols: kb)
        for i in 0 ..< ka {
            for j in 0 ..< kb {
                var sum = 0.0
                for r in 0 ..< a.rows { sum += svdA.u[r * ka + i] * svdB.u[r * kb + j] }
                core[i, j] = svdA.s[i] * sum * svdB.s[j]
            }
        }
        let inner = try LAPACK.svd(core.values, rows: ka, cols: kb)
        let k = min(ka, kb)
        var u = Matrix64(rows: a.cols, cols: k), vt = Matrix64(rows: k, cols: b.cols)
        // u = Qa·X: Qa = (vt of A)ᵀ [a.cols, ka], X [ka, k].
        for r in 0 ..< a.cols {
            for c in 0 ..< k {
                var sum = 0.0
                for i in 0 ..< ka { sum += svdA.vt[i * a.cols + r] * inner.u[i * k + c] }
                u[r, c] = sum
            }
        }
        // vt = Yᵀ·Qbᵀ: Yᵀ = inner.vt [k, kb], Qbᵀ = vt of B [kb, b.cols].
        for c in 0 ..< k {
            for j in 0 ..< b.cols {
                var sum = 0.0
                for i in 0 ..< kb { sum += inner.vt[c * kb + i] * svdB.vt[i * b.cols + j] }
                vt[c, j] = sum
            }
        }
        return (u, inner.s, vt)
    }
}
