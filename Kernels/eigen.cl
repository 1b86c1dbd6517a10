// Batched symmetric eigen-decomposition: one work-group per small matrix (Vulcan's TNNR needs every attention
// head's d×d Gram matrix decomposed every step, d = 32 … 128). Cyclic Jacobi in the parallel (round-robin
// tournament) order of Brent and Luk: each round pairs every index with another, the n/2 rotations of a round touch
// disjoint rows and columns, so they are computed from the same matrix and applied together — rows first (Jᵀ·A, and
// the same to the accumulated eigenvector rows), then columns (·J). Jacobi is accurate to roundoff relative to
// ‖A‖ for every eigenvalue, tiny ones included, which the tail of a nearly rank-deficient head needs.
//
// The matrix is worked on in place in global memory (barriers with CLK_GLOBAL_MEM_FENCE order the work-items of
// one group), so n is bounded only by the local arrays below.

#define EIGEN_MAX_N 256

// The pair `k` of round `round` in the circle method for `m + 1` players (m odd): player 0 meets `round + 1`,
// the others meet symmetrically around it. Every unordered pair meets exactly once in m rounds.
static void tournament_pair(int round, int k, int m, int* p, int* q) {
    if (k == 0) {
        *p = 0;
        *q = round % m + 1;
    } else {
        *p = (round + k) % m + 1;
        *q = (round - k + m) % m + 1;
    }
}

// a [batch, n, n] (symmetric; destroyed), values [batch, n] ascending, vectors [batch, n, n]: row i is the unit
// eigenvector of values[i] (LAPACK's ssyevd order, its column-major columns read row-major). Launched with one
// work-group per matrix along dimension 1.
__kernel void symmetric_eigen(__global float* a, int n, int sweeps, __global float* values,
                              __global float* vectors) {
    __local float cosines[EIGEN_MAX_N / 2];
    __local float sines[EIGEN_MAX_N / 2];
    __local float diagonal[EIGEN_MAX_N];
    __local float partial[64];
    __local int converged;
    const int lid = get_local_id(0), lsize = get_local_size(0);
    __global float* m_a = a + (size_t)get_global_id(1) * n * n;
    __global float* m_v = vectors + (size_t)get_global_id(1) * n * n;
    __global float* m_w = values + (size_t)get_global_id(1) * n;

    for (int i = lid; i < n * n; i += lsize) m_v[i] = (i / n == i % n) ? 1.0f : 0.0f;
    const int even = n + (n & 1);   // an odd n gets a dummy index n that never rotates
    const int pairs = even / 2, m = even - 1;
    barrier(CLK_GLOBAL_MEM_FENCE);

    for (int sweep = 0; sweep < sweeps; sweep++) {
        // Stop once the off-diagonal mass is at float32 roundoff of the whole matrix (n·eps relative).
        float off = 0, total = 0;
        for (int i = lid; i < n * n; i += lsize) {
            float x = m_a[i];
            total += x * x;
            if (i / n != i % n) off += x * x;
        }
        partial[lid] = off;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0) {
            float sum = 0;
            for (int i = 0; i < lsize; i++) sum += partial[i];
            partial[0] = sum;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        off = partial[0];
        barrier(CLK_LOCAL_MEM_FENCE);
        partial[lid] = total;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0) {
            float sum = 0;
            for (int i = 0; i < lsize; i++) sum += partial[i];
            converged = off <= (float)(n * n) * 1.5e-14f * sum || sum == 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (converged) break;

        for (int round = 0; round < m; round++) {
            for (int k = lid; k < pairs; k += lsize) {
                int p, q;
                tournament_pair(round, k, m, &p, &q);
                float c = 1, s = 0;
                if (q < n && p < n) {
                    float apq = m_a[(size_t)p * n + q];
                    if (apq != 0) {
                        // Golub & Van Loan's symmetric 2×2 Schur step, the smaller rotation angle.
                        float tau = (m_a[(size_t)q * n + q] - m_a[(size_t)p * n + p]) / (2 * apq);
                        float t = (tau >= 0 ? 1.0f : -1.0f) / (fabs(tau) + sqrt(1 + tau * tau));
                        c = 1 / sqrt(1 + t * t);
                        s = t * c;
                    }
                }
                cosines[k] = c;
                sines[k] = s;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            // Rows p, q of A and of the eigenvector rows: Jᵀ·A.
            for (int item = lid; item < pairs * n; item += lsize) {
                int k = item / n, j = item % n, p, q;
                tournament_pair(round, k, m, &p, &q);
                float c = cosines[k], s = sines[k];
                if (q >= n || p >= n || s == 0) continue;
                float ap = m_a[(size_t)p * n + j], aq = m_a[(size_t)q * n + j];
                m_a[(size_t)p * n + j] = c * ap - s * aq;
                m_a[(size_t)q * n + j] = s * ap + c * aq;
                float vp = m_v[(size_t)p * n + j], vq = m_v[(size_t)q * n + j];
                m_v[(size_t)p * n + j] = c * vp - s * vq;
                m_v[(size_t)q * n + j] = s * vp + c * vq;
            }
            barrier(CLK_GLOBAL_MEM_FENCE);
            // Columns p, q: (Jᵀ·A)·J; the rotated pair's off-diagonal entries are zero in exact arithmetic.
            for (int item = lid; item < pairs * n; item += lsize) {
                int k = item / n, i = item % n, p, q;
                tournament_pair(round, k, m, &p, &q);
                float c = cosines[k], s = sines[k];
                if (q >= n || p >= n || s == 0) continue;
                float ap = m_a[(size_t)i * n + p], aq = m_a[(size_t)i * n + q];
                float newP = c * ap - s * aq, newQ = s * ap + c * aq;
                if (i == p) newQ = 0;
                if (i == q) newP = 0;
                m_a[(size_t)i * n + p] = newP;
                m_a[(size_t)i * n + q] = newQ;
            }
            barrier(CLK_GLOBAL_MEM_FENCE);
        }
    }

    // Sort ascending by rank (ties by index): eigenvector rows move through `a`, which is no longer needed.
    for (int i = lid; i < n; i += lsize) diagonal[i] = m_a[(size_t)i * n + i];
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    for (int i = lid; i < n * n; i += lsize) m_a[i] = m_v[i];
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (int i = lid; i < n; i += lsize) {
        float value = diagonal[i];
        int rank = 0;
        for (int j = 0; j < n; j++) rank += diagonal[j] < value || (diagonal[j] == value && j < i);
        m_w[rank] = value;
        for (int j = 0; j < n; j++) m_v[(size_t)rank * n + j] = m_a[(size_t)i * n + j];
    }
}
