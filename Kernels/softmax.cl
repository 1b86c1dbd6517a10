// Row softmax with a scale folded in (attention's 1/sqrt(head_dim)). One row per work-item, and the `_wg` kernels
// with one work-group per row for GPUs (see layernorm.cl).

// `out` may alias `x`: every element is read before the same element is written, and by the same work-item.
__kernel void softmax_forward(__global const float* x, __global float* out, int rows, int cols, float scale) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* xr = x + (size_t)r * cols;
    __global float* yr = out + (size_t)r * cols;
    // Subtracting the row maximum keeps exp() from overflowing to Inf (Inf/Inf = NaN) for large logits; the max is
    // taken of scale·x, so a negative scale is handled too.
    float max_value = -INFINITY;
    for (int c = 0; c < cols; c++) max_value = fmax(max_value, scale * xr[c]);
    float total = 0;
    for (int c = 0; c < cols; c++) {
        float e = exp_vectorizable(scale * xr[c] - max_value);
        yr[c] = e;
        total += e;
    }
    float inv_total = 1.0f / total;
    for (int c = 0; c < cols; c++) yr[c] *= inv_total;
}

__kernel void softmax_backward(__global const float* dout, __global const float* y, __global float* dx,
                               int rows, int cols, float scale) {
    int r = get_global_id(0);
    if (r >= rows) return;
    size_t base = (size_t)r * cols;
    acc_t dot = 0;
    for (int c = 0; c < cols; c++) dot += dout[base + c] * y[base + c];
    float d = (float)dot;
    for (int c = 0; c < cols; c++) dx[base + c] += scale * y[base + c] * (dout[base + c] - d);
}

// `out` may alias `x`: each work-item reads and writes only its own columns.
__kernel void softmax_forward_wg(__global const float* x, __global float* out, int rows, int cols, float scale) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
    __global const float* xr = x + (size_t)r * cols;
    __global float* yr = out + (size_t)r * cols;
    float max_value = -INFINITY;
    for (int c = lid; c < cols; c += step) max_value = fmax(max_value, scale * xr[c]);
    max_value = group_max(max_value, scratch);
    float total = 0;
    for (int c = lid; c < cols; c += step) {
        float e = exp_vectorizable(scale * xr[c] - max_value);
        yr[c] = e;
        total += e;
    }
    float inv_total = 1.0f / group_sum(total, scratch);
    for (int c = lid; c < cols; c += step) yr[c] *= inv_total;
}

__kernel void softmax_backward_wg(__global const float* dout, __global const float* y, __global float* dx,
                                  int rows, int cols, float scale) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
    size_t base = (size_t)r * cols;
    float dot = 0;
    for (int c = lid; c < cols; c += step) dot += dout[base + c] * y[base + c];
    dot = group_sum(dot, scratch);
    for (int c = lid; c < cols; c += step) dx[base + c] += scale * y[base + c] * (dout[base + c] - dot);
}
