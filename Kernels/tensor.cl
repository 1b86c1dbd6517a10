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

// Work-group reductions of the GPU-shaped kernels (one work-group per row, see OpenCLKernelShape). Every work-item
// passes its partial and gets the group's result back. Partials are float: each work-item sums only cols/64 terms
// (a dozen at ViT widths) and the tree adds 64 partials pairwise, so the error stays near float32 roundoff without
// float64, which consumer GPUs run at 1/32 speed. `scratch` holds ROW_GROUP_MAX elements; the group may be smaller
// (a device may cap the local size) and need not be a power of two. Barriers inside: call in uniform control flow.
#define ROW_GROUP_MAX 64

// Component-wise sum (take_max == 0) or maximum of `value` over the work-group.
static float2 group_reduce2(float2 value, int take_max, __local float2* scratch) {
    const int lid = get_local_id(0);
    scratch[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int active = get_local_size(0); active > 1;) {
        int upper = (active + 1) >> 1;  // the first index of the upper part
        if (lid + upper < active) {
            float2 other = scratch[lid + upper];
            scratch[lid] = take_max ? fmax(scratch[lid], other) : scratch[lid] + other;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        active = upper;
    }
    float2 result = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read the result before the scratch is reused
    return result;
}

static float2 group_sum2(float2 value, __local float2* scratch) { return group_reduce2(value, 0, scratch); }
static float group_sum(float value, __local float2* scratch) { return group_reduce2((float2)(value, 0), 0, scratch).x; }
static float group_max(float value, __local float2* scratch) {
    return group_reduce2((float2)(value, -INFINITY), 1, scratch).x;
}

__kernel void add_bias(__global float* x, __global const float* bias, int rows, int cols) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows) return;
    x[(size_t)r * cols + c] += bias[c];
}

// Column reductions (bias and LayerNorm parameter gradients, mask gradients, column statistics) run in two stages:
// a long column is cut into tiles of `rows_per_tile` rows, stage 1 runs on a 2-D range (columns, tiles) and writes
// one partial per (tile, column) — the work-items of a work-group are neighbouring columns of one tile, so each row
// they read is one coalesced segment — and stage 2 adds a column's few hundred partials. A GPU then has
// cols × tiles work-items instead of cols long chains, and PoCL spreads the tiles over its cores (measured 0.3–0.8×
// the time of one work-item per column over all rows at DeiT shapes, Benchmarks/README.md). No atomics: every
// output has exactly one writer. Partials are laid out [quantity][tiles][cols].

// Stage 1 of the column sum: partials[t, c] = Σ x[r, c] over the rows of tile t.
__kernel void column_sum_partials(__global const float* x, int rows, int cols, int rows_per_tile,
                                  __global float* partials) {
    int c = get_global_id(0), t = get_global_id(1);
    if (c >= cols) return;
    int start = t * rows_per_tile, end = min(start + rows_per_tile, rows);
    acc_t s = 0;
    for (int r = start; r < end; r++) s += x[(size_t)r * cols + c];
    partials[(size_t)t * cols + c] = (float)s;
}

// Stage 2 of every float column reduction: out[c] += Σ_t partials[first + t·cols + c]. With `masked` set, columns
// whose keep[c] is 0 are left alone (the masked LayerNorm's removed channels); without it `keep` is not read.
__kernel void column_partials_combine(__global const float* partials, int first, int tiles, int cols,
                                      __global const float* keep, int masked, __global float* out) {
    int c = get_global_id(0);
    if (c >= cols || (masked && keep[c] == 0)) return;
    __global const float* column = partials + first + c;
    acc_t s = 0;
    for (int t = 0; t < tiles; t++) s += column[(size_t)t * cols];
    out[c] += (float)s;
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
