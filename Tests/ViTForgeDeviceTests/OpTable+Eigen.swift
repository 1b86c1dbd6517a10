@testable import ViTForgeDevice
import ViTForgeTestBasics

// Op-table rows of the batched symmetric eigen-decomposition (Vulcan's TNNR), against LAPACK's float64 dsyevd.
// Eigenvectors are defined up to sign, so rows compare sign-fixed vectors (largest component positive) where the
// eigenvalues are well separated, and projectors onto eigen-spaces (sign-free) where they are not.

extension OpCase {
    static let eigen: [OpCase] = [
        OpCase("symmetricEigen of 5 random symmetric 13×13 matrices") { rng in
            let (n, batch) = (13, 5)
            let matrices = (0 ..< batch).map { _ in symmetric(rng.values(n * n), n: n) }
            return eigenRow(matrices, n: n, tailCount: 6, tailTolerance: 1e-4)
        },
        // Gram matrices W·Wᵀ of 37×41 matrices of rank 5 plus noise of 1e-4: 32 eigenvalues ~1e-8 of the largest,
        // the TNNR tail of a head that has almost reached its rank. Its projector must be right although the
        // individual tail vectors are not defined.
        OpCase("symmetricEigen of 3 nearly rank-deficient 37×37 Gram matrices (rank 5 + 1e-4 noise)") { rng in
            let (n, columns, rank, batch) = (37, 41, 5, 3)
            let matrices = (0 ..< batch).map { _ -> [Double] in
                let left = rng.values(n * rank), right = rng.values(rank * columns), noise = rng.values(n * columns)
                var w = [Double](repeating: 0, count: n * columns)
                for i in 0 ..< n {
                    for j in 0 ..< columns {
                        var sum = 1e-4 * noise[i * columns + j]
                        for r in 0 ..< rank { sum += left[i * rank + r] * right[r * columns + j] }
                        w[i * columns + j] = Double(Float(sum))
                    }
                }
                var gram = [Double](repeating: 0, count: n * n)
                for i in 0 ..< n {
                    for j in 0 ..< n {
                        var sum = 0.0
                        for c in 0 ..< columns { sum += w[i * columns + c] * w[j * columns + c] }
                        gram[i * n + j] = Double(Float(sum))
                    }
                }
                return symmetric(gram, n: n)
            }
            return eigenRow(matrices, n: n, tailCount: n - rank, tailTolerance: 1e-4)
        },
    ]

    /// (A + Aᵀ)/2, rounded to float32 so both sides see the same matrix.
    static func symmetric(_ a: [Double], n: Int) -> [Double] {
        (0 ..< n * n).map { Double(Float((a[$0] + a[($0 % n) * n + $0 / n]) / 2)) }
    }

    /// Outputs: the eigenvalues; the sign-fixed eigenvectors of the `n − tailCount` largest eigenvalues; the
    /// projector onto the `tailCount` smallest; and ‖A·V − V·Λ‖ per element (the decomposition itself).
    static func eigenRow(_ matrices: [[Double]], n: Int, tailCount: Int, tailTolerance: Double) -> PreparedOp {
        let batch = matrices.count
        var values: [Double] = [], head: [Double] = [], projector: [Double] = []
        for matrix in matrices {
            guard let (w, v) = try? LAPACK.symmetricEigen(matrix, n: n) else { break }
            values += w
            head += signFixed(Array(v[tailCount * n ..< n * n]), n: n)
            projector += tailProjector(v, n: n, tailCount: tailCount)
        }
        return PreparedOp(
            expected: [ExpectedOutput("values", values, Tolerance.reduction),
                       ExpectedOutput("leading vectors (sign-fixed)", head, 1e-4),
                       ExpectedOutput("tail projector", projector, tailTolerance),
                       ExpectedOutput("residual A·vᵢ − λᵢ·vᵢ", [Double](repeating: 0, count: batch * n * n), 0)],
            run: { backend in
                let a = try backend.buffer(matrices.flatMap { $0 })
                let w = try backend.allocate(batch * n), v = try backend.allocate(batch * n * n)
                try backend.symmetricEigen(a, n: n, batch: batch, values: w, vectors: v)
                let gotValues = try backend.values(w), gotVectors = try backend.values(v)
                var gotHead: [Double] = [], gotProjector: [Double] = [], residual: [Double] = []
                for b in 0 ..< batch {
                    let vectors = Array(gotVectors[b * n * n ..< (b + 1) * n * n])
                    gotHead += signFixed(Array(vectors[tailCount * n ..< n * n]), n: n)
                    gotProjector += tailProjector(vectors, n: n, tailCount: tailCount)
                    // Relative to ‖A‖ (the largest |λ|) and rounded away below float32 accuracy, so the expected
                    // zeros test that each row is an eigenvector of its value.
                    let scale = gotValues[b * n ..< (b + 1) * n].map(abs).max() ?? 1
                    for i in 0 ..< n {
                        for r in 0 ..< n {
                            var sum = -gotValues[b * n + i] * vectors[i * n + r]
                            for c in 0 ..< n { sum += matrices[b][r * n + c] * vectors[i * n + c] }
                            residual.append(abs(sum) / scale < 1e-4 ? 0 : sum / scale)
                        }
                    }
                }
                return [gotValues, gotHead, gotProjector, residual]
            })
    }

    /// Each row of `vectors` [k, n] times the sign of its largest-magnitude component.
    static func signFixed(_ vectors: [Double], n: Int) -> [Double] {
        stride(from: 0, to: vectors.count, by: n).flatMap { start -> [Double] in
            let row = vectors[start ..< start + n]
            let largest = row.max { abs($0) < abs($1) } ?? 1
            return row.map { largest < 0 ? -$0 : $0 }
        }
    }

    /// Σ_{i < tailCount} vᵢ·vᵢᵀ for eigenvector rows `vectors` [n, n] (ascending values).
    static func tailProjector(_ vectors: [Double], n: Int, tailCount: Int) -> [Double] {
        var projector = [Double](repeating: 0, count: n * n)
        for i in 0 ..< tailCount {
            for r in 0 ..< n {
                for c in 0 ..< n { projector[r * n + c] += vectors[i * n + r] * vectors[i * n + c] }
            }
        }
        return projector
    }
}
