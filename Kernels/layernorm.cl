// LayerNorm over the last dimension, in two shapes (OpenCLKernelShape). CPU devices (PoCL): one row per work-item,
// because there barrier-based work-group reductions are several times slower than a plain loop, and rows (tokens)
// are plentiful. GPUs (the `_wg` kernels): one work-group per row, work-item i reading columns i, i+L, i+2L… so
// that neighbouring work-items read neighbouring addresses, and the row's sums reduced in local memory. The row of a
// `_wg` kernel is its group along dimension 0 (dimension 1 of a launch is capped at 65535 groups on some GPUs).

// One row of layernorm_forward (and of residual_layernorm_forward, on the row of sums it has just written).
static void layernorm_row(__global const float* xr, __global const float* gamma, __global const float* beta,
                          __global float* yr, __global float* mean, __global float* rstd, int r, int cols, float eps) {
    // Two passes (mean, then squared deviations) instead of E[x²] − E[x]²: the one-pass form cancels
    // catastrophically for activations whose mean is large next to their spread.
    acc_t s = 0;
    for (int c = 0; c < cols; c++) s += xr[c];
    float m = (float)(s / cols);
    acc_t ss = 0;
    for (int c = 0; c < cols; c++) { float d = xr[c] - m; ss += d * d; }
    float inv_std = (float)(1 / sqrt((acc_t)(ss / cols) + eps));
    for (int c = 0; c < cols; c++) yr[c] = (xr[c] - m) * inv_std * gamma[c] + beta[c];
    mean[r] = m;
    rstd[r] = inv_std;
}

__kernel void layernorm_forward(__global const float* x, __global const float* gamma, __global const float* beta,
                                __global float* out, __global float* mean, __global float* rstd,
                                int rows, int cols, float eps) {
    int r = get_global_id(0);
    if (r >= rows) return;
    layernorm_row(x + (size_t)r * cols, gamma, beta, out + (size_t)r * cols, mean, rstd, r, cols, eps);
}

// sum = residual + (branch + bias), then its LayerNorm (LayerOps.residualLayerNormForward). `sum` may alias
// `residual` or `branch`: each element is read before it is written, by the same work-item.
__kernel void residual_layernorm_forward(__global const float* residual, __global const float* branch,
                                         __global const float* bias, __global float* sum,
                                         __global const float* gamma, __global const float* beta,
                                         __global float* out, __global float* mean, __global float* rstd,
                                         int rows, int cols, float eps) {
    int r = get_global_id(0);
    if (r >= rows) return;
    size_t base = (size_t)r * cols;
    for (int c = 0; c < cols; c++) sum[base + c] = residual[base + c] + (branch[base + c] + bias[c]);
    layernorm_row(sum + base, gamma, beta, out + base, mean, rstd, r, cols, eps);
}

// dX for one row: with g = dOut·gamma and x̂ the normalised input, dX = rstd·(g − mean(g) − x̂·mean(g·x̂)).
__kernel void layernorm_backward_input(__global const float* dout, __global const float* x,
                                       __global const float* gamma, __global const float* mean,
                                       __global const float* rstd, __global float* dx, int rows, int cols) {
    int r = get_global_id(0);
    if (r >= rows) return;
    size_t base = (size_t)r * cols;
    float m = mean[r], s = rstd[r];
    acc_t sum_g = 0, sum_gx = 0;
    for (int c = 0; c < cols; c++) {
        float g = dout[base + c] * gamma[c];
        sum_g += g;
        sum_gx += g * ((x[base + c] - m) * s);
    }
    float mean_g = (float)(sum_g / cols), mean_gx = (float)(sum_gx / cols);
    for (int c = 0; c < cols; c++) {
        float g = dout[base + c] * gamma[c];
        float xhat = (x[base + c] - m) * s;
        dx[base + c] += s * (g - mean_g - xhat * mean_gx);
    }
}

// LayerNorm over the kept channels only (keep[c] is 1 or 0: a residual-width mask). Statistics over the kept
// columns, removed columns written 0: the LayerNorm of the physically smaller model, on the full-width tensor.
__kernel void masked_layernorm_forward(__global const float* x, __global const float* gamma,
                                       __global const float* beta, __global const float* keep, __global float* out,
                                       __global float* mean, __global float* rstd, int rows, int cols, float eps) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* xr = x + (size_t)r * cols;
    __global float* yr = out + (size_t)r * cols;
    acc_t s = 0, n = 0;
    for (int c = 0; c < cols; c++) if (keep[c] != 0) { s += xr[c]; n += 1; }
    float m = (float)(s / n);
    acc_t ss = 0;
    for (int c = 0; c < cols; c++) if (keep[c] != 0) { float d = xr[c] - m; ss += d * d; }
    float inv_std = (float)(1 / sqrt((acc_t)(ss / n) + eps));
    for (int c = 0; c < cols; c++) yr[c] = keep[c] != 0 ? (xr[c] - m) * inv_std * gamma[c] + beta[c] : 0;
    mean[r] = m;
    rstd[r] = inv_std;
}

__kernel void masked_layernorm_backward_input(__global const float* dout, __global const float* x,
                                              __global const float* gamma, __global const float* keep,
                                              __global const float* mean, __global const float* rstd,
                                              __global float* dx, int rows, int cols) {
    int r = get_global_id(0);
    if (r >= rows) return;
    size_t base = (size_t)r * cols;
    float m = mean[r], s = rstd[r];
    acc_t sum_g = 0, sum_gx = 0, n = 0;
    for (int c = 0; c < cols; c++) {
        if (keep[c] == 0) continue;
        float g = dout[base + c] * gamma[c];
        sum_g += g;
        sum_gx += g * ((x[base + c] - m) * s);
        n += 1;
    }
    float mean_g = (float)(sum_g / n), mean_gx = (float)(sum_gx / n);
    for (int c = 0; c < cols; c++) {
        if (keep[c] == 0) continue;
        float g = dout[base + c] * gamma[c];
        float xhat = (x[base + c] - m) * s;
        dx[base + c] += s * (g - mean_g - xhat * mean_gx);
    }
}

// The GPU shapes. Same arguments as their one-work-item-per-row counterparts above; launched with exactly one
// work-group per row, so no work-item returns early (PoCL miscompiles barriers after a group-dependent return).

// One row of layernorm_forward_wg, work-item `lid` of `step` reading columns lid, lid + step, … (the same columns
// residual_layernorm_forward_wg's work-item has just written). Two passes here too (mean, then squared
// deviations): see layernorm_row. Barriers inside: call in uniform control flow.
static void layernorm_row_wg(__global const float* xr, __global const float* gamma, __global const float* beta,
                             __global float* yr, __global float* mean, __global float* rstd, int r, int cols,
                             float eps, __local float2* scratch) {
    const int lid = get_local_id(0), step = get_local_size(0);
    float s = 0;
    for (int c = lid; c < cols; c += step) s += xr[c];
    float m = group_sum(s, scratch) / cols;
    float ss = 0;
    for (int c = lid; c < cols; c += step) { float d = xr[c] - m; ss += d * d; }
    float inv_std = 1 / sqrt(group_sum(ss, scratch) / cols + eps);
    for (int c = lid; c < cols; c += step) yr[c] = (xr[c] - m) * inv_std * gamma[c] + beta[c];
    if (lid == 0) {
        mean[r] = m;
        rstd[r] = inv_std;
    }
}

__kernel void layernorm_forward_wg(__global const float* x, __global const float* gamma, __global const float* beta,
                                   __global float* out, __global float* mean, __global float* rstd,
                                   int rows, int cols, float eps) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0);
    layernorm_row_wg(x + (size_t)r * cols, gamma, beta, out + (size_t)r * cols, mean, rstd, r, cols, eps, scratch);
}

__kernel void residual_layernorm_forward_wg(__global const float* residual, __global const float* branch,
                                            __global const float* bias, __global float* sum,
                                            __global const float* gamma, __global const float* beta,
                                            __global float* out, __global float* mean, __global float* rstd,
                                            int rows, int cols, float eps) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
    size_t base = (size_t)r * cols;
    for (int c = lid; c < cols; c += step) sum[base + c] = residual[base + c] + (branch[base + c] + bias[c]);
    layernorm_row_wg(sum + base, gamma, beta, out + base, mean, rstd, r, cols, eps, scratch);
}

__kernel void layernorm_backward_input_wg(__global const float* dout, __global const float* x,
                                          __global const float* gamma, __global const float* mean,
                                          __global const float* rstd, __global float* dx, int rows, int cols) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
    size_t base = (size_t)r * cols;
    float m = mean[r], s = rstd[r];
    float2 sums = (float2)(0);  // (Σ g, Σ g·x̂)
    for (int c = lid; c < cols; c += step) {
        float g = dout[base + c] * gamma[c];
        sums += (float2)(g, g * ((x[base + c] - m) * s));
    }
    sums = group_sum2(sums, scratch) / (float)cols;
    for (int c = lid; c < cols; c += step) {
        float g = dout[base + c] * gamma[c];
        float xhat = (x[base + c] - m) * s;
        dx[base + c] += s * (g - sums.x - xhat * sums.y);
    }
}

__kernel void masked_layernorm_forward_wg(__global const float* x, __global const float* gamma,
                                          __global const float* beta, __global const float* keep,
                                          __global float* out, __global float* mean, __global float* rstd,
                                          int rows, int cols, float eps) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
    __global const float* xr = x + (size_t)r * cols;
    __global float* yr = out + (size_t)r * cols;
    float2 sums = (float2)(0);  // (Σ x, kept columns) over the kept columns
    for (int c = lid; c < cols; c += step) if (keep[c] != 0) sums += (float2)(xr[c], 1);
    sums = group_sum2(sums, scratch);
    float n = sums.y, m = sums.x / n;
    float ss = 0;
    for (int c = lid; c < cols; c += step) if (keep[c] != 0) { float d = xr[c] - m; ss += d * d; }
    float inv_std = 1 / sqrt(group_sum(ss, scratch) / n + eps);
    for (int c = lid; c < cols; c += step) yr[c] = keep[c] != 0 ? (xr[c] - m) * inv_std * gamma[c] + beta[c] : 0;
    if (lid == 0) {
        mean[r] = m;
        rstd[r] = inv_std;
    }
}

__kernel void masked_layernorm_backward_input_wg(__global const float* dout, __global const float* x,
                                                 __global const float* gamma, __global const float* keep,
                                                 __global const float* mean, __global const float* rstd,
                                                 __global float* dx, int rows, int cols) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
    size_t base = (size_t)r * cols;
    float m = mean[r], s = rstd[r];
    float2 sums = (float2)(0);  // (Σ g, Σ g·x̂) over the kept columns
    float n = 0;
    for (int c = lid; c < cols; c += step) {
        if (keep[c] == 0) continue;
        float g = dout[base + c] * gamma[c];
        sums += (float2)(g, g * ((x[base + c] - m) * s));
        n += 1;
    }
    float kept = group_sum(n, scratch);
    sums = group_sum2(sums, scratch) / kept;
    for (int c = lid; c < cols; c += step) {
        if (keep[c] == 0) continue;
        float g = dout[base + c] * gamma[c];
        float xhat = (x[base + c] - m) * s;
        dx[base + c] += s * (g - sums.x - xhat * sums.y);
    }
}

// Stage 1 of dGamma and dBeta (tiles of rows; see column_sum_partials): partials[0][t][c] = Σ dOut·x̂ and
// partials[1][t][c] = Σ dOut over the rows of tile t. The masked LayerNorm uses it too: its removed columns get
// partials that stage 2 never adds.
__kernel void layernorm_params_partials(__global const float* dout, __global const float* x,
                                        __global const float* mean, __global const float* rstd, int rows, int cols,
                                        int rows_per_tile, __global float* partials) {
    int c = get_global_id(0), t = get_global_id(1);
    if (c >= cols) return;
    int tiles = (rows + rows_per_tile - 1) / rows_per_tile;
    int start = t * rows_per_tile, end = min(start + rows_per_tile, rows);
    acc_t sum_gamma = 0, sum_beta = 0;
    for (int r = start; r < end; r++) {
        size_t i = (size_t)r * cols + c;
        float d = dout[i];
        sum_gamma += d * ((x[i] - mean[r]) * rstd[r]);
        sum_beta += d;
    }
    partials[(size_t)t * cols + c] = (float)sum_gamma;
    partials[((size_t)tiles + t) * cols + c] = (float)sum_beta;
}
