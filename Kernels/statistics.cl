// Float64 statistics and reductions. Everything here needs cl_khr_fp64; without it these kernels are not compiled
// and the host reports the operation as unsupported instead of silently losing precision.
#ifdef cl_khr_fp64

// Running per-column mean/M2 over many batches (activation statistics for pruning over a whole calibration set).
// Summing x and x² in float32 and subtracting later loses everything for channels whose mean is large against
// their spread, so each tile of a batch's rows gets a two-pass mean/M2 in float64, and the tiles are merged into the
// batch and the batch into the running state with Chan et al.'s pairwise update: δ = mean_b − mean_a,
// mean = mean_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n.
// State layout: double mean[cols], then double M2[cols].

// The pairwise update: (mean, M2) of n_a values merged with (mean_b, M2_b) of n_b more.
static void merge_moments(double* mean, double* m2, double n_a, double mean_b, double m2_b, double n_b) {
    double n = n_a + n_b, delta = mean_b - *mean;
    *mean += delta * (n_b / n);
    *m2 += m2_b + delta * delta * (n_a * n_b / n);
}

// Two stages (see column_sum_partials in tensor.cl). Stage 1: a two-pass float64 mean and M2 of column c over the
// rows of tile t; partials (doubles) [2][tiles][cols]: means, then M2s.
__kernel void column_statistics_partials(__global const float* x, int rows, int cols, int rows_per_tile,
                                         __global double* partials) {
    int c = get_global_id(0), t = get_global_id(1);
    if (c >= cols) return;
    int tiles = (rows + rows_per_tile - 1) / rows_per_tile;
    int start = t * rows_per_tile, end = min(start + rows_per_tile, rows);
    double sum = 0;
    for (int r = start; r < end; r++) sum += x[(size_t)r * cols + c];
    double tile_mean = sum / (end - start);
    double tile_m2 = 0;
    for (int r = start; r < end; r++) {
        double d = x[(size_t)r * cols + c] - tile_mean;
        tile_m2 += d * d;
    }
    partials[(size_t)t * cols + c] = tile_mean;
    partials[((size_t)tiles + t) * cols + c] = tile_m2;
}

// Stage 2: the tiles of column c merged into the batch's mean/M2 with the pairwise update, then the batch into the
// running state.
__kernel void column_statistics_combine(__global const double* partials, int rows, int cols, int rows_per_tile,
                                        __global double* state, long count_before) {
    int c = get_global_id(0);
    if (c >= cols || rows <= 0) return;
    int tiles = (rows + rows_per_tile - 1) / rows_per_tile;
    double batch_mean = 0, batch_m2 = 0, merged = 0;
    for (int t = 0; t < tiles; t++) {
        double n_t = (double)(min((t + 1) * rows_per_tile, rows) - t * rows_per_tile);
        merge_moments(&batch_mean, &batch_m2, merged, partials[(size_t)t * cols + c],
                      partials[((size_t)tiles + t) * cols + c], n_t);
        merged += n_t;
    }
    double mean = state[c], m2 = state[cols + c];
    merge_moments(&mean, &m2, (double)count_before, batch_mean, batch_m2, (double)rows);
    state[c] = mean;
    state[cols + c] = m2;
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
