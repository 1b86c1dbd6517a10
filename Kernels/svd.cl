// Matrix-vector products (the compensation's column sums Aᵀ·1 of each calibration batch). Hand-written instead of
// CLBlast's Sgemv: these run a handful of times per pruning step, and each extra CLBlast routine costs seconds of
// cold compilation on some drivers.

// y = A·x, one row per work-item.
__kernel void mat_vec(__global const float* a, int rows, int cols, __global const float* x, __global float* y) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* ar = a + (size_t)r * cols;
    acc_t s = 0;
    for (int c = 0; c < cols; c++) s += ar[c] * x[c];
    y[r] = (float)s;
}

// y = Aᵀ·x, one column per work-item: neighbouring work-items read neighbouring addresses of each row.
__kernel void mat_vec_transposed(__global const float* a, int rows, int cols, __global const float* x,
                                 __global float* y) {
    int c = get_global_id(0);
    if (c >= cols) return;
    acc_t s = 0;
    for (int r = 0; r < rows; r++) s += a[(size_t)r * cols + c] * x[r];
    y[c] = (float)s;
}
