#ifndef VITFORGE_CGEMMDNNL_H
#define VITFORGE_CGEMMDNNL_H

/// oneDNN, loaded at run time (dlopen) the first time one of these is called: a machine without it runs the CPU
/// backend on OpenBLAS. NULL when oneDNN was loaded; else why it cannot be used, one line.
const char *vitforge_dnnl_problem(void);

/// oneDNN's version, "major.minor.patch"; NULL when it is not loaded.
const char *vitforge_dnnl_version(void);

/// Row-major C = alpha·op(A)·op(B) + beta·C through oneDNN's dnnl_sgemm, on the calling thread only (oneDNN's
/// OpenMP threads off for this thread: the CPU backend splits a product over its own workers). Returns oneDNN's
/// status (0: success; -1: oneDNN not loaded).
int vitforge_dnnl_sgemm(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                        const float *b, long ldb, float beta, float *c, long ldc);

#endif
