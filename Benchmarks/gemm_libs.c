// The GEMM libraries at every GEMM shape of a ViT forward and backward (issue 31, part 2), in one process so that
// they alternate shape by shape: each shape runs every library in turn, the order rotating, for several rounds, and
// a library's speed at a shape is the median over rounds of its fastest call in the round. On a shared machine
// whose load moves by the minute, alternating per shape is what keeps the ratios between libraries meaningful.
// BLIS exports the same BLAS symbols as OpenBLAS, so it is opened with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) and
// called through its own API; oneDNN (dnnl_sgemm) and libxsmm (static, falling back to the linked OpenBLAS above its
// small-matrix limit, as in any program that uses it) are linked. Row-major C = alpha·op(A)·op(B) + beta·C, as the
// CPU backend calls it.
//
// Two ways to use two cores, given as the first argument (the second: rounds, default 5):
//   split    the backend's way (CPUBackend+Gemm.swift): the library single-threaded, C split in two blocks along the
//            longer of m and n, one block per worker; a batch (attention's per-(image, head) products) split in two
//            halves; products under 2^18 MACs run on one worker. This is what replacing `sgemm` in the backend gives;
//            one worker's share is timed, on one core (see `run`), and GFLOP/s are that core's.
//   library  one call with the library's own 2 threads (a batch: one such call per product).
// Prints a JSON object per shape and library: transposes, m, n, k, batch, beta, GFLOP/s per round (its fastest call
// of ≥ 3 and ≥ 10 ms), their median, and the largest relative error of 64 sampled entries against a float64 product
// (a wrong wrapper — a swapped transpose or leading dimension — shows up there, not as a fast row).
#include <blis.h>
#include <cblas.h>
#include <dlfcn.h>
#include <libxsmm.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);  // OpenBLAS's, hidden by blis.h's cblas.h

enum { openblas, onednn, blis, libxsmm, libraries };
static const char *names[libraries] = {"openblas", "onednn", "blis", "libxsmm"};
static int library, threads;

static void (*blis_sgemm)(trans_t, trans_t, dim_t, dim_t, dim_t, float *, float *, inc_t, inc_t, float *, inc_t,
                          inc_t, float *, float *, inc_t, inc_t);
static void (*blis_set_threads)(dim_t);

static void open_blis(void) {
    void *handle = dlopen("libblis.so.4", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!handle) { fprintf(stderr, "gemm_libs: %s\n", dlerror()); exit(1); }
    blis_sgemm = dlsym(handle, "bli_sgemm");
    blis_set_threads = dlsym(handle, "bli_thread_set_num_threads");
    if (!blis_sgemm || !blis_set_threads) { fprintf(stderr, "gemm_libs: BLIS without bli_sgemm\n"); exit(1); }
}

static void set_threads(int count) {
    threads = count;
    openblas_set_num_threads(count);
    blis_set_threads(count);
    omp_set_num_threads(count);  // oneDNN and libxsmm's _omp entry
}

static void gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc) {
    switch (library) {
    case openblas:
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                    lda, b, ldb, beta, c, ldc);
        break;
    case onednn:
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        break;
    case blis:
        blis_sgemm(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha,
                   (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1);
        break;
    case libxsmm: {
        // Column-major: row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
        const char tA = tb ? 'T' : 'N', tB = ta ? 'T' : 'N';
        const libxsmm_blasint M = n, N = m, K = k, LDA = ldb, LDB = lda, LDC = ldc;
        if (threads > 1)
            libxsmm_sgemm_omp(&tA, &tB, &M, &N, &K, &alpha, b, &LDA, a, &LDB, &beta, c, &LDC);
        else
            libxsmm_sgemm(&tA, &tB, &M, &N, &K, &alpha, b, &LDA, a, &LDB, &beta, c, &LDC);
        break;
    }
    }
}

static int split_mode;
enum { parallel_macs = 1 << 18 };  // CPUBackend's parallelGemmMacs

typedef struct {
    int ta, tb, m, n, k, lda, ldb, ldc, batch;
    long stride_a, stride_b, stride_c;
    float alpha, beta;
} spec;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// In split mode, one worker's share (the first block of C, or the first half of a batch) on the calling thread:
// both workers run the same library on equal shares at once, so the share's speed on one core ranks the libraries
// as the split does. Timing both workers added the scheduler's wake-up of the second one to every call alike, which
// on a shared machine (load 10 on 2 cores) buried the libraries' differences at every shape under ~1 ms.
static void run(const spec *s, const float *a, const float *b, float *c) {
    int m = s->m, n = s->n, batch = s->batch;
    if (split_mode && (long)s->m * s->n * s->k * s->batch >= parallel_macs) {
        if (batch > 1)
            batch /= 2;
        else if (m >= n)
            m /= 2;
        else
            n /= 2;
    }
    for (int i = 0; i < batch; i++)
        gemm(s->ta, s->tb, m, n, s->k, s->alpha, a + i * s->stride_a, s->lda, b + i * s->stride_b, s->ldb, s->beta,
             c + i * s->stride_c, s->ldc);
}

// The flops `run` does.
static double work(const spec *s) {
    double flops = 2.0 * s->m * s->n * s->k * s->batch;
    return split_mode && (long)s->m * s->n * s->k * s->batch >= parallel_macs
               ? (s->batch > 1 ? 2.0 * s->m * s->n * s->k * (s->batch / 2)
                               : flops / (s->m >= s->n ? s->m : s->n) * ((s->m >= s->n ? s->m : s->n) / 2))
               : flops;
}

static int compare_doubles(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static float *values(size_t count, unsigned seed) {
    float *p = malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) p[i] = (float)(((i + seed) * 7919) % 1000) * 1e-3f - 0.5f;
    return p;
}

// Element (i, j) of op(X) for a row-major X with leading dimension ld.
static float at(const float *x, int trans, int ld, int i, int j) { return trans ? x[(long)j * ld + i] : x[(long)i * ld + j]; }

static double check(const spec *s, const float *a, const float *b, const float *c0, const float *c) {
    spec share = *s;  // the part of C that `run` computes
    if (split_mode && (long)s->m * s->n * s->k * s->batch >= parallel_macs) {
        if (s->batch > 1)
            share.batch /= 2;
        else if (s->m >= s->n)
            share.m /= 2;
        else
            share.n /= 2;
    }
    double worst = 0;
    for (int t = 0; t < 64; t++) {
        int p = (t * 40503) % share.batch, i = (t * 7 + 3) % share.m, j = (t * 13 + 5) % share.n;
        const float *ap = a + p * s->stride_a, *bp = b + p * s->stride_b;
        double sum = 0, scale = 0;
        for (int l = 0; l < s->k; l++) {
            double x = at(ap, s->ta, s->lda, i, l), y = at(bp, s->tb, s->ldb, l, j);
            sum += x * y;
            scale += fabs(x * y);
        }
        long e = p * s->stride_c + (long)i * s->ldc + j;
        double want = s->alpha * sum + s->beta * c0[e];
        double error = fabs(c[e] - want) / (fabs(s->alpha) * scale + fabs(s->beta * c0[e]) + 1e-30);
        if (error > worst) worst = error;
    }
    return worst;
}

static int rounds = 5;

// The fastest of ≥ 3 calls and ≥ 10 ms, in GFLOP/s.
static double fastest(const spec *s, const float *a, const float *b, float *c) {
    double best = 1e30, start = now(), end;
    int calls = 0;
    do {
        double before = now();
        run(s, a, b, c);
        end = now();
        if (end - before < best) best = end - before;
        calls++;
    } while (calls < 3 || end - start < 0.01);
    return work(s) / best / 1e9;
}

static void bench(const char *label, spec s) {
    long rows_a = s.ta ? s.k : s.m, rows_b = s.tb ? s.n : s.k;
    if (!s.lda) s.lda = s.ta ? s.m : s.k;
    if (!s.ldb) s.ldb = s.tb ? s.k : s.n;
    if (!s.ldc) s.ldc = s.n;
    if (!s.stride_a) s.stride_a = rows_a * s.lda;
    if (!s.stride_b) s.stride_b = rows_b * s.ldb;
    if (!s.stride_c) s.stride_c = (long)s.m * s.ldc;
    size_t size_a = (size_t)(s.batch - 1) * s.stride_a + rows_a * s.lda;
    size_t size_b = (size_t)(s.batch - 1) * s.stride_b + rows_b * s.ldb;
    size_t size_c = (size_t)(s.batch - 1) * s.stride_c + (size_t)s.m * s.ldc;
    float *a = values(size_a, 1), *b = values(size_b, 2), *c0 = values(size_c, 3), *c = malloc(size_c * sizeof(float));
    double error[libraries], speed[libraries][64];
    for (library = 0; library < libraries; library++) {
        memcpy(c, c0, size_c * sizeof(float));
        run(&s, a, b, c);  // also the warm-up
        error[library] = check(&s, a, b, c0, c);
    }
    // Timed calls accumulate into C when beta = 1; scale the values down so that they stay finite.
    if (s.beta != 0) for (size_t i = 0; i < size_c; i++) c[i] *= 1e-3f;
    static int turn;
    for (int round = 0; round < rounds; round++, turn++)
        for (int i = 0; i < libraries; i++) {
            library = (i + turn) % libraries;
            speed[library][round] = fastest(&s, a, b, c);
        }
    for (library = 0; library < libraries; library++) {
        double sorted[64];
        memcpy(sorted, speed[library], rounds * sizeof(double));
        qsort(sorted, rounds, sizeof(double), compare_doubles);
        printf("{\"library\":\"%s\",\"mode\":\"%s\",\"shape\":\"%s\",\"trans\":\"%c%c\",\"m\":%d,\"n\":%d,"
               "\"k\":%d,\"batch\":%d,\"beta\":%g,\"gflops\":%.2f,\"rounds\":[",
               names[library], split_mode ? "split" : "library", label, s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n,
               s.k, s.batch, s.beta, rounds % 2 ? sorted[rounds / 2] : (sorted[rounds / 2 - 1] + sorted[rounds / 2]) / 2);
        for (int r = 0; r < rounds; r++) printf("%s%.2f", r ? "," : "", speed[library][r]);
        printf("],\"max_rel_error\":%.1e}\n", error[library]);
    }
    fflush(stdout);
    free(a); free(b); free(c0); free(c);
}

// A linear layer rows × in → out: the forward (x·Wᵀ), dX (dY·W) and dW (dYᵀ·x, accumulated), as Linear.swift
// calls them. The first layer has no dX.
static void linear(const char *model, const char *layer, int rows, int in, int out, int backward, int first) {
    char label[128];
    snprintf(label, sizeof label, "%s:%s:fwd", model, layer);
    bench(label, (spec){.ta = 0, .tb = 1, .m = rows, .n = out, .k = in, .batch = 1, .alpha = 1, .beta = 0});
    if (!backward) return;
    if (!first) {
        snprintf(label, sizeof label, "%s:%s:dX", model, layer);
        bench(label, (spec){.ta = 0, .tb = 0, .m = rows, .n = in, .k = out, .batch = 1, .alpha = 1, .beta = 0});
    }
    snprintf(label, sizeof label, "%s:%s:dW", model, layer);
    bench(label, (spec){.ta = 1, .tb = 0, .m = out, .n = in, .k = rows, .batch = 1, .alpha = 1, .beta = 1});
}

// Attention's per-(image, head) products as the fused CPU attention calls them: q, k, v rows interleaved in the
// [tokens × 3·width] qkv matrix, the output in the [tokens × width] merged matrix. Forward: S = q·kᵀ, O = P·v;
// backward adds dP = dO·vᵀ (the shape of S), dV += Pᵀ·dO, dQ += dS·k, dK += dSᵀ·q.
static void attention(const char *model, int batch, int tokens, int width, int heads, int backward) {
    int d = width / heads, n = tokens, features = 3 * width, items = batch * heads;
    char label[128];
    // Consecutive products of a batch step by one image's rows (heads of one image share the rows; the benchmark
    // steps by a whole image so that no two products of the batch write the same C).
    long image = (long)n * features, scores = (long)n * n, merged = (long)n * width;
    snprintf(label, sizeof label, "%s:attn:qk", model);
    bench(label, (spec){.ta = 0, .tb = 1, .m = n, .n = n, .k = d, .lda = features, .ldb = features, .ldc = n,
                        .batch = items, .stride_a = image, .stride_b = image, .stride_c = scores, .alpha = 0.125f});
    snprintf(label, sizeof label, "%s:attn:pv", model);
    bench(label, (spec){.ta = 0, .tb = 0, .m = n, .n = d, .k = n, .lda = n, .ldb = features, .ldc = width,
                        .batch = items, .stride_a = scores, .stride_b = image, .stride_c = merged, .alpha = 1});
    if (!backward) return;
    snprintf(label, sizeof label, "%s:attn:dV", model);
    bench(label, (spec){.ta = 1, .tb = 0, .m = n, .n = d, .k = n, .lda = n, .ldb = width, .ldc = features,
                        .batch = items, .stride_a = scores, .stride_b = merged, .stride_c = image, .alpha = 1,
                        .beta = 1});
    snprintf(label, sizeof label, "%s:attn:dQ", model);
    bench(label, (spec){.ta = 0, .tb = 0, .m = n, .n = d, .k = n, .lda = n, .ldb = features, .ldc = features,
                        .batch = items, .stride_a = scores, .stride_b = image, .stride_c = image, .alpha = 1,
                        .beta = 1});
}

typedef struct {
    const char *name;
    int channels, patch, patches, tokens, width, heads, mlp, classes;
    int attention_width;  // q/k/v and proj features when pruned (0: the width)
} model;

static void vit(model v, int batch, int backward) {
    char name[96];
    snprintf(name, sizeof name, "%s@%d%s", v.name, batch, backward ? ":train" : "");
    int rows = batch * v.tokens, inner = v.attention_width ? v.attention_width : v.width;
    linear(name, "patch", batch * v.patches, v.channels * v.patch * v.patch, v.width, backward, 1);
    linear(name, "qkv", rows, v.width, 3 * inner, backward, 0);
    attention(name, batch, v.tokens, inner, v.heads, backward);
    linear(name, "proj", rows, inner, v.width, backward, 0);
    linear(name, "fc1", rows, v.width, v.mlp, backward, 0);
    linear(name, "fc2", rows, v.mlp, v.width, backward, 0);
    linear(name, "head", batch, v.width, v.classes, backward, 0);
}

int main(int argc, char **argv) {
    split_mode = !(argc > 1 && strcmp(argv[1], "library") == 0);
    if (argc > 2) rounds = atoi(argv[2]);
    if (rounds < 1 || rounds > 64) { fprintf(stderr, "gemm_libs: rounds must be 1...64\n"); return 1; }
    open_blis();
    libxsmm_init();
    set_threads(split_mode ? 1 : 2);
    const model fm_vit_c = {"fm-vit-c", 1, 4, 49, 50, 96, 2, 384, 10};
    const model fm_vit_b = {"fm-vit-b", 1, 7, 16, 17, 128, 4, 256, 10};
    const model deit_tiny = {"deit-tiny", 3, 16, 196, 198, 192, 3, 768, 1000};
    const model deit_small = {"deit-small", 3, 16, 196, 197, 384, 6, 1536, 1000};
    const model deit_base = {"deit-base", 3, 16, 196, 197, 768, 12, 3072, 1000};
    // Widths a pruning method picks (issue 31: 173, 175, 246; heads of a few dims): DeiT-Tiny at 3 heads of 8
    // dims (24 q/k/v features; the residual stays 192) and an MLP of 173. DeiT-Tiny is the distilled one
    // (198 tokens, as `vitforge train --arch deit-tiny`); DeiT-Small/Base without the distillation token (197).
    const model deit_tiny_pruned = {"deit-tiny-pruned", 3, 16, 196, 198, 192, 3, 173, 1000, 24};
    vit(fm_vit_c, 1, 0);
    vit(fm_vit_c, 256, 0);
    vit(fm_vit_c, 128, 1);
    vit(fm_vit_b, 256, 0);
    vit(fm_vit_b, 128, 1);
    vit(deit_tiny, 1, 0);
    vit(deit_tiny, 64, 1);
    vit(deit_small, 1, 0);
    vit(deit_small, 64, 1);
    vit(deit_base, 16, 1);
    vit(deit_tiny_pruned, 64, 1);
    return 0;
}
