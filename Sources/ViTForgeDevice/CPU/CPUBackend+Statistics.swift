import CBLAS

// Column statistics, reductions, and the linear algebra of power iteration. Everything summed over many samples
// is summed in float64.

extension CPUBackend {
    public func uncheckedColumnStatisticsAccumulate(x: Buffer, rows: Int, cols: Int, state: Buffer,
                                                    countBefore: Int) throws {
        let x = pointer(x)
        let state = float64s(state)
        guard rows > 0 else { return }
        let countA = Double(countBefore)
        let countB = Double(rows)
        let total = countA + countB
        // Each worker owns a share of the columns; the batch's own mean and M2 are two passes over its rows,
        // then merged into the running state (Chan, Golub & LeVeque 1979):
        // δ = mean_B − mean_A, mean = mean_A + δ·n_B/n, M2 = M2_A + M2_B + δ²·n_A·n_B/n.
        parallelChunks(cols, costPerItem: 3 * rows) { colRange in
            let width = colRange.count
            let first = colRange.lowerBound
            withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * width) { scratch in
                scratch.initialize(repeating: 0)
                for r in 0 ..< rows {
                    let row = x + r * cols + first
                    for j in 0 ..< width { scratch[j] += Double(row[j]) }
                }
                for j in 0 ..< width { scratch[j] /= countB }
                for r in 0 ..< rows {
                    let row = x + r * cols + first
                    for j in 0 ..< width {
                        let deviation = Double(row[j]) - scratch[j]
                        scratch[width + j] += deviation * deviation
                    }
                }
                for j in 0 ..< width {
                    let meanA = state[first + j]
                    let m2A = state[cols + first + j]
                    let delta = scratch[j] - meanA
                    state[first + j] = meanA + delta * countB / total
                    state[cols + first + j] = m2A + scratch[width + j] + delta * delta * countA * countB / total
                }
            }
        }
    }

    public func uncheckedSum(_ x: Buffer, count: Int) throws -> Double {
        blockingCounter.increment()
        let x = pointer(x)
        return parallelSum(count) { elements in sumAsDouble(x + elements.lowerBound, elements.count) }
    }

    public func uncheckedSumOfSquares(_ x: Buffer, count: Int) throws -> Double {
        blockingCounter.increment()
        let x = pointer(x)
        return parallelSum(count) { elements in sumOfSquaresAsDouble(x + elements.lowerBound, elements.count) }
    }

    public func uncheckedGram(_ a: Buffer, rows: Int, cols: Int, out: Buffer) throws {
        let a = pointer(a)
        let out = pointer(out)
        guard cols > 0 else { return }
        // Aᵀ·A as one GEMM (ssyrk would do half the flops but fills only one triangle).
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, blasInt(cols), blasInt(cols), blasInt(rows),
                    1, a, blasInt(cols), a, blasInt(cols), 0, out, blasInt(cols))
    }

    public func uncheckedMatVec(_ a: Buffer, rows: Int, cols: Int, x: Buffer, y: Buffer, transposed: Bool) throws {
        let (a, x, y) = (pointer(a), pointer(x), pointer(y))
        guard rows > 0, cols > 0 else {
            // An empty sum: y is all zeros.
            y.update(repeating: 0, count: transposed ? cols : rows)
            return
        }
        cblas_sgemv(CblasRowMajor, transposed ? CblasTrans : CblasNoTrans, blasInt(rows), blasInt(cols),
                    1, a, blasInt(cols), x, 1, 0, y, 1)
    }

    /// Sums `partial` over one chunk per worker; the chunks' float64 partial sums are then added in order, so the
    /// result does not depend on which worker finishes first.
    private func parallelSum(_ count: Int, _ partial: (Range<Int>) -> Double) -> Double {
        withUnsafeTemporaryAllocation(of: Double.self, capacity: threads) { partials in
            partials.initialize(repeating: 0)
            parallelChunks(count, costPerItem: 1) { chunk, elements in partials[chunk] = partial(elements) }
            var total = 0.0
            for value in partials { total += value }
            return total
        }
    }
}
