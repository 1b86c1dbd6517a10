// Register-only FMA loops, one function per instruction set, compiled for that set alone with target attributes so
// that the rest of the binary keeps the build's baseline and the widest set is picked at run time.
//
// Each loop keeps 12 independent accumulators: an FMA's latency (4 cycles on current x86 cores) times the FMA units
// (2) is 8 chains in flight at least, and 12 leaves room for 3-cycle-latency or 3-unit cores. Each accumulator
// follows x ← x·m + c with m slightly below 1, which converges to c / (1 − m) and stays a normal float however long
// the loop runs (denormals would slow some cores down).
#include "FMAPeak.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx512f")))
static double run_avx512(long iterations, float *sink) {
    const __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
    __m512 x0 = _mm512_set1_ps(0.1f), x1 = _mm512_set1_ps(0.2f), x2 = _mm512_set1_ps(0.3f);
    __m512 x3 = _mm512_set1_ps(0.4f), x4 = _mm512_set1_ps(0.5f), x5 = _mm512_set1_ps(0.6f);
    __m512 x6 = _mm512_set1_ps(0.7f), x7 = _mm512_set1_ps(0.8f), x8 = _mm512_set1_ps(0.9f);
    __m512 x9 = _mm512_set1_ps(1.1f), x10 = _mm512_set1_ps(1.2f), x11 = _mm512_set1_ps(1.3f);
    for (long i = 0; i < iterations; i++) {
        x0 = _mm512_fmadd_ps(x0, m, c); x1 = _mm512_fmadd_ps(x1, m, c); x2 = _mm512_fmadd_ps(x2, m, c);
        x3 = _mm512_fmadd_ps(x3, m, c); x4 = _mm512_fmadd_ps(x4, m, c); x5 = _mm512_fmadd_ps(x5, m, c);
        x6 = _mm512_fmadd_ps(x6, m, c); x7 = _mm512_fmadd_ps(x7, m, c); x8 = _mm512_fmadd_ps(x8, m, c);
        x9 = _mm512_fmadd_ps(x9, m, c); x10 = _mm512_fmadd_ps(x10, m, c); x11 = _mm512_fmadd_ps(x11, m, c);
    }
    __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x0, x1), _mm512_add_ps(x2, x3)),
                               _mm512_add_ps(_mm512_add_ps(x4, x5), _mm512_add_ps(x6, x7)));
    sum = _mm512_add_ps(sum, _mm512_add_ps(_mm512_add_ps(x8, x9), _mm512_add_ps(x10, x11)));
    *sink = _mm512_reduce_add_ps(sum);
    return 2.0 * 16 * 12 * (double)iterations;
}

__attribute__((target("avx2,fma")))
static double run_avx2(long iterations, float *sink) {
    const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
    __m256 x0 = _mm256_set1_ps(0.1f), x1 = _mm256_set1_ps(0.2f), x2 = _mm256_set1_ps(0.3f);
    __m256 x3 = _mm256_set1_ps(0.4f), x4 = _mm256_set1_ps(0.5f), x5 = _mm256_set1_ps(0.6f);
    __m256 x6 = _mm256_set1_ps(0.7f), x7 = _mm256_set1_ps(0.8f), x8 = _mm256_set1_ps(0.9f);
    __m256 x9 = _mm256_set1_ps(1.1f), x10 = _mm256_set1_ps(1.2f), x11 = _mm256_set1_ps(1.3f);
    for (long i = 0; i < iterations; i++) {
        x0 = _mm256_fmadd_ps(x0, m, c); x1 = _mm256_fmadd_ps(x1, m, c); x2 = _mm256_fmadd_ps(x2, m, c);
        x3 = _mm256_fmadd_ps(x3, m, c); x4 = _mm256_fmadd_ps(x4, m, c); x5 = _mm256_fmadd_ps(x5, m, c);
        x6 = _mm256_fmadd_ps(x6, m, c); x7 = _mm256_fmadd_ps(x7, m, c); x8 = _mm256_fmadd_ps(x8, m, c);
        x9 = _mm256_fmadd_ps(x9, m, c); x10 = _mm256_fmadd_ps(x10, m, c); x11 = _mm256_fmadd_ps(x11, m, c);
    }
    __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                               _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    sum = _mm256_add_ps(sum, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    *sink = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
    return 2.0 * 8 * 12 * (double)iterations;
}
#endif

// Any other CPU: 16 independent multiply-adds in plain C (the compiler contracts and vectorises them where it can),
// a lower bound on what the vector units could do, reported as such (VFPeakScalar).
static double run_scalar(long iterations, float *sink) {
    float x[16];
    for (int j = 0; j < 16; j++) x[j] = 0.1f * (float)(j + 1);
    for (long i = 0; i < iterations; i++) {
        for (int j = 0; j < 16; j++) x[j] = x[j] * 0.9999f + 1e-4f;
    }
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += x[j];
    *sink = sum;
    return 2.0 * 16 * (double)iterations;
}

VFPeakISA vf_peak_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    // __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV).
    if (__builtin_cpu_supports("avx512f")) return VFPeakAVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return VFPeakAVX2;
#endif
    return VFPeakScalar;
}

double vf_peak_run(VFPeakISA isa, long iterations, float *sink) {
    switch (isa) {
#if defined(__x86_64__) || defined(__i386__)
    case VFPeakAVX512: return run_avx512(iterations, sink);
    case VFPeakAVX2: return run_avx2(iterations, sink);
#endif
    default: return run_scalar(iterations, sink);
    }
}
