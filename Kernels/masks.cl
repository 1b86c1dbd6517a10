// Channel masks: applied in the forward by scaling columns, and the masked-gradient path that returns each mask
// entry's gradient dMask[c] = Σ_r x[r,c]·dY[r,c] (x before the mask, dY the gradient of the masked tensor).

// out[r, c] = x[r, c] · mask[c]; a 2-D range (columns, rows), so neighbouring work-items touch neighbouring
// addresses. out may be x.
__kernel void scale_columns(__global const float* x, __global const float* mask, __global float* out,
                            int rows, int cols) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows) return;
    size_t i = (size_t)r * cols + c;
    out[i] = x[i] * mask[c];
}

// Stage 1 of the mask gradient (a two-stage column reduction, see column_sum_partials in tensor.cl; stage 2 is
// column_partials_combine): work-item (c, t) sums x·dY over the rows of tile t in column c. partials: [tiles, cols].
__kernel void mask_gradient_partials(__global const float* x, __global const float* dy, int rows, int cols,
                                     int rows_per_tile, __global float* partials) {
    int c = get_global_id(0), t = get_global_id(1);
    if (c >= cols) return;
    int start = t * rows_per_tile;
    int end = min(start + rows_per_tile, rows);
    acc_t s = 0;
    for (int r = start; r < end; r++) {
        size_t i = (size_t)r * cols + c;
        s += (acc_t)x[i] * dy[i];
    }
    partials[(size_t)t * cols + c] = (float)s;
}


// out[r, c] = x[r, c] · mask[r] (a mask on a weight's output rows); out may be x.
__kernel void scale_rows(__global const float* x, __global const float* mask, __global float* out, int rows,
                         int cols) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows) return;
    size_t i = (size_t)r * cols + c;
    out[i] = x[i] * mask[r];
}

// dMask[r] += Σ_c x[r, c]·dY[r, c]: one work-item per row over a weight's columns (a few hundred to a few thousand;
// the rows are a weight's output features, not the batch's tokens).
__kernel void mask_gradient_rows(__global const float* x, __global const float* dy, int rows, int cols,
                                 __global float* d_mask) {
    int r = get_global_id(0);
    if (r >= rows) return;
    size_t base = (size_t)r * cols;
    acc_t s = 0;
    for (int c = 0; c < cols; c++) s += (acc_t)x[base + c] * dy[base + c];
    d_mask[r] += (float)s;
}

// dst[s] += Σ src[members[k]] for k in offsets[s] ..< offsets[s+1]: one work-item per segment (a mask value, summing
// the gradients of the few columns it multiplies). Out-of-range members poison the result with NaN.
__kernel void segment_sum(__global const float* src, int src_count, __global const int* offsets,
                          __global const int* members, int member_count, __global float* dst, int segments) {
    int s = get_global_id(0);
    if (s >= segments) return;
    acc_t sum = 0;
    for (int k = offsets[s]; k < offsets[s + 1]; k++) {
        int m = (k >= 0 && k < member_count) ? members[k] : -1;
        sum += (m >= 0 && m < src_count) ? (acc_t)src[m] : (acc_t)NAN;
    }
    dst[s] += (float)sum;
}

// y[i] += alpha · sign(x[i]), sign(0) = 0.
__kernel void add_scaled_sign(__global const float* x, float alpha, __global float* y, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    float v = x[i];
    y[i] += v > 0 ? alpha : v < 0 ? -alpha : 0;
}
