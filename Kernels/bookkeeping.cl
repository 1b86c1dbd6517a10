// A training step's bookkeeping kept on the device, so that a step reads nothing back (the loss, a non-finite flag,
// the gradient norm for clipping). Needs cl_khr_fp64 like statistics.cl, whose sum_partials produces the per-group
// float64 partial sums these kernels combine.
#ifdef cl_khr_fp64

#define BOOKKEEPING_GROUP_SIZE 64

// One work-group: s = Σ partials[0 ..< groups] (fixed order: the same bits every run), then
// acc[j] += w_j·s for j < weight_count with w_j ≠ 0, and when s is not finite and flag ≥ 0, the first marker:
// acc[flag] = marker, acc[flag + 1] = s unless acc[flag] already holds a smaller non-zero marker.
__kernel __attribute__((reqd_work_group_size(BOOKKEEPING_GROUP_SIZE, 1, 1)))
void accumulate_partials(__global const double* partials, int groups, __global double* acc, int weight_count,
                         double w0, double w1, double w2, double w3, double w4, double w5, double w6, double w7,
                         int flag, double marker) {
    __local double scratch[BOOKKEEPING_GROUP_SIZE];
    int lid = get_local_id(0);
    double s = 0;
    for (int i = lid; i < groups; i += BOOKKEEPING_GROUP_SIZE) s += partials[i];
    scratch[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int width = BOOKKEEPING_GROUP_SIZE / 2; width > 0; width >>= 1) {
        if (lid < width) scratch[lid] += scratch[lid + width];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        double total = scratch[0];
        double w[8] = {w0, w1, w2, w3, w4, w5, w6, w7};
        for (int j = 0; j < weight_count; j++) {
            if (w[j] != 0.0) acc[j] += w[j] * total;
        }
        if (flag >= 0 && !isfinite(total) && (acc[flag] == 0.0 || marker < acc[flag])) {
            acc[flag] = marker;
            acc[flag + 1] = total;
        }
    }
}

// Gradient clipping by a norm that never leaves the device: c = max_norm / (√acc[index] + epsilon) in float64,
// x *= (float)c only when c < 1 (a NaN norm leaves x as it is, as the host path did).
__kernel void clip_scale(__global float* x, int count, __global const double* acc, int index, double max_norm,
                         double epsilon) {
    int i = get_global_id(0);
    if (i >= count) return;
    double c = max_norm / (sqrt(acc[index]) + epsilon);
    if (c < 1.0) x[i] *= (float)c;
}

#endif
