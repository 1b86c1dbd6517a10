// LayerNorm over the last dimension. One row per work-item: on CPU devices (PoCL) barrier-based work-group
// reductions are several times slower than a plain loop, and rows (tokens) are plentiful.

__kernel void layernorm_forward(__global const float* x, __global const float* gamma, __global const float* beta,
                                __global float* out, __global float* mean, __global float* rstd,
                                int rows, int cols, float eps) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* xr = x + (size_t)r * cols;
    __global float* yr = out + (size_t)r * cols;
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

// dGamma[c] += Σ_r dOut·x̂ and dBeta[c] += Σ_r dOut over the rows of column c.
static void layernorm_params_column(__global const float* dout, __global const float* x,
                                    __global const float* mean, __global const float* rstd,
                                    __global float* dgamma, __global float* dbeta, int rows, int cols, int c) {
    acc_t sum_gamma = 0, sum_beta = 0;
    for (int r = 0; r < rows; r++) {
        size_t i = (size_t)r * cols + c;
        float d = dout[i];
        sum_gamma += d * ((x[i] - mean[r]) * rstd[r]);
        sum_beta += d;
    }
    dgamma[c] += (float)sum_gamma;
    dbeta[c] += (float)sum_beta;
}

// dGamma and dBeta are sums over rows: one work-item per column, so each output has exactly one writer.
__kernel void layernorm_backward_params(__global const float* dout, __global const float* x,
                                        __global const float* mean, __global const float* rstd,
                                        __global float* dgamma, __global float* dbeta, int rows, int cols) {
    int c = get_global_id(0);
    if (c >= cols) return;
    layernorm_params_column(dout, x, mean, rstd, dgamma, dbeta, rows, cols, c);
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

__kernel void masked_layernorm_backward_params(__global const float* dout, __global const float* x,
                                               __global const float* keep, __global const float* mean,
                                               __global const float* rstd, __global float* dgamma,
                                               __global float* dbeta, int rows, int cols) {
    int c = get_global_id(0);
    if (c >= cols || keep[c] == 0) return;
    layernorm_params_column(dout, x, mean, rstd, dgamma, dbeta, rows, cols, c);
}
