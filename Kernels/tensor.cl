// Elementwise and copy-like kernels. This file comes first when the files are concatenated into one program, so
// the shared definitions live here.
//
// Conventions of every kernel in the program: sizes are `int` (the host refuses anything above INT_MAX), flat
// indices that multiply two sizes are computed in size_t, and every kernel checks its own bounds because the host
// rounds global sizes up to a fixed local size (odd shapes are the normal case, not the exception).
// Kernels over a [rows, cols] matrix that need the column of an element run on a 2-D range (dimension 0 = column,
// dimension 1 = row): recovering the column as i % cols costs an integer division per element, which CPUs cannot
// vectorise (it made bias add 10x slower on PoCL).

#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
// Sums over thousands of rows drop low-order digits in float32; where the device has float64 the reductions of
// this program use it (on CPUs and data-centre GPUs it costs next to nothing in these memory-bound loops).
typedef double acc_t;
#else
typedef float acc_t;
#endif

// exp(x) from float arithmetic only, within ~1-2 ulp of the correctly rounded value. PoCL's built-in exp without
// -cl-fast-relaxed-math is a scalar library call that stops the loop vectoriser (softmax 4x slower), and
// fast-relaxed-math is not an option for this program (see OpenCLBackend.buildOptions).
// Cody–Waite reduction x = k·ln2 + r, |r| ≤ ln2/2 (ln2 split in a part exact in float and a small remainder), a
// degree-7 polynomial for e^r (Cephes' expf coefficients), and 2^k assembled from exponent bits in two halves so
// that k from -149 (subnormal results) to 128 cannot overflow the exponent field.
inline float exp_vectorizable(float x) {
    float clamped = clamp(x, -104.0f, 89.0f);
    int k = convert_int_rte(clamped * 1.44269504088896341f);
    float kf = (float)k;
    float r = (clamped - kf * 0.693359375f) + kf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    int k_low = k / 2;
    e *= as_float((k_low + 127) << 23);
    e *= as_float((k - k_low + 127) << 23);
    if (x < -104.0f) e = 0.0f;
    if (x > 88.72283935546875f) e = INFINITY;
    return isnan(x) ? x : e;
}

__kernel void add_bias(__global float* x, __global const float* bias, int rows, int cols) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows) return;
    x[(size_t)r * cols + c] += bias[c];
}

// One work-item per column: consecutive work-items read consecutive addresses of each row, and no atomics are
// needed because every column has exactly one writer.
__kernel void column_sum_accumulate(__global const float* x, __global float* sums, int rows, int cols) {
    int c = get_global_id(0);
    if (c >= cols) return;
    acc_t s = 0;
    for (int r = 0; r < rows; r++) s += x[(size_t)r * cols + c];
    sums[c] += (float)s;
}

__kernel void add(__global const float* a, __global const float* b, __global float* out, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    out[i] = a[i] + b[i];
}

__kernel void axpy(float alpha, __global const float* x, __global float* y, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    y[i] += alpha * x[i];
}

__kernel void scale(__global float* x, float alpha, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    x[i] *= alpha;
}

// C = beta·C on a strided batch of row-major sub-matrices: a GEMM with k == 0, which CLBlast rejects.
// beta == 0 writes zeros rather than 0·C so that NaN or Inf left in C does not survive, as BLAS specifies.
__kernel void scale_matrices(__global float* c, int offset, int rows, int cols, int ld, int stride, int batch,
                             float beta) {
    size_t i = get_global_id(0);
    size_t per_matrix = (size_t)rows * cols;
    if (i >= per_matrix * batch) return;
    size_t b = i / per_matrix, within = i % per_matrix;
    size_t r = within / cols, col = within % cols;
    size_t at = offset + b * stride + r * ld + col;
    c[at] = beta == 0.0f ? 0.0f : beta * c[at];
}

// An index outside the source cannot be reported from a kernel; it yields NaN, so the mistake shows up in the
// first loss or norm instead of as a silent read of another tensor.
__kernel void gather(__global const float* src, int src_count, __global const int* indices, __global float* dst,
                     int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    int j = indices[i];
    dst[i] = (j >= 0 && j < src_count) ? src[j] : NAN;
}

// Indices are unique by contract, so plain += has no write conflicts; an out-of-range index is skipped rather
// than allowed to corrupt memory.
__kernel void scatter_add(__global const float* src, __global const int* indices, __global float* dst,
                          int dst_count, int count) {
    int i = get_global_id(0);
    if (i >= count) return;
    int j = indices[i];
    if (j >= 0 && j < dst_count) dst[j] += src[i];
}
