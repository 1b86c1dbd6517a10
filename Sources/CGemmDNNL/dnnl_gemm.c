#include "CGemmDNNL.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

// oneDNN is loaded at run time, not linked: a binary built here starts on a machine without it (a user's, the
// Docker image before `libdnnl2` is installed) and runs on OpenBLAS; only `VITFORGE_GEMM=onednn|auto` needs it,
// and says so in one line when it is missing. The two entry points used are the same in oneDNN 2.x and 3.x.
typedef int (*sgemm_fn)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                        float, float *, int64_t);
typedef struct { int major, minor, patch; } version_prefix;  // dnnl_version_t's first fields
typedef const version_prefix *(*version_fn)(void);

static sgemm_fn sgemm;
static void (*set_threads)(int);
static char version[32];
static char problem[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    static const char *const names[] = {"libdnnl.so.3", "libdnnl.so.2", "libdnnl.so"};
    void *library = NULL;
    for (unsigned i = 0; i < sizeof names / sizeof names[0] && !library; i++) {
        library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (!library) {
        snprintf(problem, sizeof problem, "oneDNN is not installed (no libdnnl.so.3 or libdnnl.so.2: Debian's "
                 "libdnnl2 package)");
        return;
    }
    sgemm = (sgemm_fn)dlsym(library, "dnnl_sgemm");
    version_fn get_version = (version_fn)dlsym(library, "dnnl_version");
    if (!sgemm || !get_version) {
        sgemm = NULL;
        snprintf(problem, sizeof problem, "the oneDNN library found has no dnnl_sgemm/dnnl_version");
        return;
    }
    const version_prefix *v = get_version();
    snprintf(version, sizeof version, "%d.%d.%d", v->major, v->minor, v->patch);
    // oneDNN's OpenMP runtime (libgomp), loaded with it; searched through the handle because RTLD_LOCAL keeps it
    // out of the global scope.
    set_threads = (void (*)(int))dlsym(library, "omp_set_num_threads");
}

const char *vitforge_dnnl_problem(void) {
    pthread_once(&once, load);
    return sgemm ? NULL : problem;
}

const char *vitforge_dnnl_version(void) {
    pthread_once(&once, load);
    return sgemm ? version : NULL;
}

// oneDNN sizes each call's OpenMP team from the calling thread's nthreads ICV, which for a Dispatch worker is the
// process default (the core count): every block would start a team of its own on cores the other workers use.
// Setting it to 1 once per thread makes each call run on its caller only, so a product's result does not depend on
// how many threads OpenMP would have given it.
static void single_threaded(void) {
    static _Thread_local int done;
    if (done) return;
    done = 1;
    if (set_threads) set_threads(1);
}

int vitforge_dnnl_sgemm(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                        const float *b, long ldb, float beta, float *c, long ldc) {
    pthread_once(&once, load);
    if (!sgemm) return -1;
    single_threaded();
    return sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
