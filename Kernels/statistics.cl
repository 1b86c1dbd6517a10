// Float64 statistics and reductions. Everything here needs cl_khr_fp64; without it these kernels are not compiled
// and the host reports the operation as unsupported instead of silently losing precision.
#ifdef cl_khr_fp64

// Running per-column mean/M2 over many batches (activation statistics for pruning over a whole calibration set).
// Summing x and x² in float32 and subtracting later loses everything for channels whose mean is large against
// their spread, so each batch gets a two-pass mean/M2 in float64 and is merged into the running state with Chan
// et al.'s pairwise update: δ = mean_b − mean_a, mean = mean_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n.
// State layout: double mean[cols], then double M2[cols].
__kernel void column_statistics_accumulate(__global const float* x, int rows, int cols,
                                           __global double* state, long count_before) {
    int c = get_global_id(0);
    if (c >= cols || rows <= 0) return;
    double sum = 0;
    for (int r = 0; r < rows; r++) sum += x[(size_t)r * cols + c];
    double batch_mean = sum / rows;
    double batch_m2 = 0;
    for (int r = 0; r < rows; r++) {
        double d = x[(size_t)r * cols + c] - batch_mean;
        batch_m2 += d * d;
    }
    double n_a = (double)count_before, n_b = (double)rows, n = n_a + n_b;
    double delta = batch_mean - state[c];
    state[c] += delta * (n_b / n);
    state[cols + c] += batch_m2 + delta * delta * (n_a * n_b / n);
}

#define REDUCTION_GROUP_SIZE 64

// Σx, Σx² or Σ|x| in float64: each work-item sums a grid-strided slice (consecutive work-items touch consecutive
// addresses), then the group combines its 64 partials; the host adds the per-group results.
__kernel __attribute__((reqd_work_group_size(REDUCTION_GROUP_SIZE, 1, 1)))
void sum_partials(__global const float* x, int count, int mode, __global double* partials) {
    __local double scratch[REDUCTION_GROUP_SIZE];
    size_t stride = get_global_size(0);
    double s = 0;
    for (size_t i = get_global_id(0); i < (size_t)count; i += stride) {
        double v = x[i];
        s += mode == 1 ? v * v : mode == 2 ? fabs(v) : v;  // Σx, Σx² or Σ|x|
    }
    int lid = get_local_id(0);
    scratch[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int width = REDUCTION_GROUP_SIZE / 2; width > 0; width >>= 1) {
        if (lid < width) scratch[lid] += scratch[lid + width];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) partials[get_group_id(0)] = scratch[0];
}

#endif
