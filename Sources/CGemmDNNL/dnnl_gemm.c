#include "CGemmDNNL.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>

// oneDNN sizes each call's OpenMP team from the calling thread's nthreads ICV, which for a Dispatch worker is the
// process default (the core count): every block would start a team of its own on cores the other workers use.
// Setting it to 1 once per thread makes each call run on its caller only, so a product's result does not depend on
// how many threads OpenMP would have given it. libgomp is oneDNN's dependency, found at run time (linking it here
// would need the compiler's own library folder on the link line).
static void single_threaded(void) {
    static _Thread_local int done;
    if (done) return;
    done = 1;
    void (*set_threads)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (set_threads) set_threads(1);
}

int vitforge_dnnl_sgemm(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                        const float *b, long ldb, float beta, float *c, long ldc) {
    single_threaded();
    return (int)dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

const char *vitforge_dnnl_version(void) {
    static char text[32];
    if (!text[0]) {
        const dnnl_version_t *version = dnnl_version();
        snprintf(text, sizeof text, "%d.%d.%d", version->major, version->minor, version->patch);
    }
    return text;
}
