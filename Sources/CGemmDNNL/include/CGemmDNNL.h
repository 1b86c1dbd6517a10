#ifndef VITFORGE_CGEMMDNNL_H
#define VITFORGE_CGEMMDNNL_H

/// Row-major C = alpha·op(A)·op(B) + beta·C through oneDNN's dnnl_sgemm, on the calling thread only (oneDNN's
/// OpenMP threads off for this thread: the CPU backend splits a product over its own workers). Returns oneDNN's
/// status (0: success).
int vitforge_dnnl_sgemm(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                        const float *b, long ldb, float beta, float *c, long ldc);

/// oneDNN's version, "major.minor.patch".
const char *vitforge_dnnl_version(void);

#endif
