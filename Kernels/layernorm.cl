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

// dGamma and dBeta are sums over rows: one work-item per column, so each output has exactly one writer.
__kernel void layernorm_backward_params(__global const float* dout, __global const float* x,
                                        __global const float* mean, __global const float* rstd,
                                        __global float* dgamma, __global float* dbeta, int rows, int cols) {
    int c = get_global_id(0);
    if (c >= cols) return;
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
