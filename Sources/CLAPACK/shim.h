// The few LAPACK routines ViTForge calls, as the Fortran symbols OpenBLAS exports (Debian ships no lapacke.h).
// Fortran passes every argument by reference; matrices are column-major; character arguments are followed by
// hidden length arguments, which these one-character options never need (gfortran ignores them for len 1).
#ifndef VITFORGE_CLAPACK_SHIM_H
#define VITFORGE_CLAPACK_SHIM_H

// Eigenvalues (ascending, in w) and, with jobz = 'V', eigenvectors (overwriting a, one per column) of a symmetric
// n×n matrix; divide and conquer. lwork/liwork = -1 asks for the workspace sizes in work[0]/iwork[0].
void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w, float *work,
             const int *lwork, int *iwork, const int *liwork, int *info);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
             const int *lwork, int *iwork, const int *liwork, int *info);

// Singular value decomposition a = u·diag(s)·vt of an m×n matrix (divide and conquer); jobz = 'S' gives the
// min(m, n) leading columns of u and rows of vt. a is destroyed.
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s, float *u,
             const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork, int *iwork, int *info);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s, double *u,
             const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *iwork, int *info);

// Solves a·x = b for a symmetric positive definite n×n matrix a (Cholesky; uplo 'U' reads the upper triangle) and
// nrhs right-hand sides in b (n×nrhs, column-major), overwritten by x; a is overwritten by its factor. info > 0: a is
// not positive definite (the leading minor of that order is not), and nothing was solved.
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb,
            int *info);

#endif
