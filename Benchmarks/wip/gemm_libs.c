// One GEMM library at ViT shapes (issue 31, part 2): built once per library (their BLAS symbols clash in one
// process), run by gemm_libs.sh in alternating rounds. Row-major C = op(A)·op(B) on 2 threads; prints
// "library shape GFLOP/s" lines, best of --repeats after one warm-up.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(LIB_OPENBLAS)
#include <cblas.h>
static const char *library = "openblas";
static void setup(int threads) { openblas_set_num_threads(threads); }
static void gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1, a, lda, b,
                ldb, 0, c, ldc);
}
#elif defined(LIB_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
static const char *library = "onednn";
static void setup(int threads) { (void)threads; /* OMP_NUM_THREADS */ }
static void gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc) {
    dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1, a, lda, b, ldb, 0, c, ldc);
}
#elif defined(LIB_BLIS)
#include <blis.h>
static const char *library = "blis";
static void setup(int threads) { bli_thread_set_num_threads(threads); }
static void gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc) {
    float one = 1, zero = 0;
    bli_sgemm(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &one,
              (float *)a, lda, 1, (float *)b, ldb, 1, &zero, c, ldc, 1);
}
#elif defined(LIB_LIBXSMM)
#include <libxsmm.h>
static const char *library = "libxsmm";
static void setup(int threads) { (void)threads; libxsmm_init(); }
// Column-major library: row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
static void gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc) {
    const char tA = tb ? 'T' : 'N', tB = ta ? 'T' : 'N';
    const float one = 1, zero = 0;
    const libxsmm_blasint M = n, N = m, K = k, LDA = ldb, LDB = lda, LDC = ldc;
    libxsmm_sgemm_omp(&tA, &tB, &M, &N, &K, &one, b, &LDA, a, &LDB, &zero, c, &LDC);
}
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *values(size_t count) {
    float *p = malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) p[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    return p;
}

// One linear layer (rows × in → out) of a forward and its two backward products, or attention's q·kᵀ/p·v per
// (image, head) of a batch.
static void bench(const char *name, int ta, int tb, int m, int n, int k, int count, int repeats) {
    int lda = ta ? m : k, ldb = tb ? k : n;
    float *a = values((size_t)m * k), *b = values((size_t)k * n), *c = values((size_t)m * n);
    double best = 1e30;
    for (int r = 0; r <= repeats; r++) {
        double start = now();
        for (int i = 0; i < count; i++) gemm(ta, tb, m, n, k, a, lda, b, ldb, c, n);
        double t = now() - start;
        if (r > 0 && t < best) best = t;
    }
    printf("%s %s %c%c %dx%dx%d%s%d %.2f\n", library, name, ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k,
           count > 1 ? "x" : "", count > 1 ? count : 0, 2.0 * m * n * k * count / best / 1e9);
    free(a); free(b); free(c);
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 3;
    setup(2);
    // name, tokens, width, mlp, heads, batch
    struct { const char *name; int tokens, width, mlp, heads, batch; } models[] = {
        {"fm-vit-b@256", 50, 128, 512, 4, 256}, {"deit-tiny@16", 197, 192, 768, 3, 16}};
    for (int i = 0; i < 2; i++) {
        int rows = models[i].tokens * models[i].batch, w = models[i].width, h = models[i].mlp;
        int layers[4][2] = {{w, 3 * w}, {w, w}, {w, h}, {h, w}};
        const char *names[4] = {"qkv", "proj", "fc1", "fc2"};
        for (int l = 0; l < 4; l++) {
            int in = layers[l][0], out = layers[l][1];
            char label[64];
            snprintf(label, sizeof label, "%s:%s:fwd", models[i].name, names[l]);
            bench(label, 0, 1, rows, out, in, 1, repeats);
            snprintf(label, sizeof label, "%s:%s:dX", models[i].name, names[l]);
            bench(label, 0, 0, rows, in, out, 1, repeats);
            snprintf(label, sizeof label, "%s:%s:dW", models[i].name, names[l]);
            bench(label, 1, 0, out, in, rows, 1, repeats);
        }
        int t = models[i].tokens, d = w / models[i].heads, products = models[i].batch * models[i].heads;
        char label[64];
        snprintf(label, sizeof label, "%s:qk", models[i].name);
        bench(label, 0, 1, t, t, d, products, repeats);
        snprintf(label, sizeof label, "%s:pv", models[i].name);
        bench(label, 0, 0, t, d, t, products, repeats);
    }
    return 0;
}
