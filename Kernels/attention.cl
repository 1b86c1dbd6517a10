// Fused multi-head attention: softmax(scale·q·kᵀ)·v per image and head, reading q, k and v in place from the fused
// qkv rows, without storing the [tokens × tokens] probabilities. The forward saves each query's log-sum-exp
// (lse = log Σ_j exp(s_ij)); the backward recomputes p_ij = exp(s_ij − lse_i) from it.
//
// Shared arguments: `heads_table[h]` = (q/k width, v width, offset in the q (and k) part, offset in the v part and
// in the merged output) of head h; `total_qk` = Σ q/k widths (where the k part starts; v starts at 2·total_qk);
// `features` = the qkv row length; `merged` = Σ v widths (the output row length). An "item" is one (head, image)
// pair, head-major: item = head·batch + image, and lse/delta are [items, tokens].
//
// Two shapes (OpenCLKernelShape): `_rows` kernels give each query (or key) row one work-item and loop over the
// other side with no barriers, for CPU devices; `_tiled` kernels give 16 rows to a 64-work-item group that stages
// tiles of 16 keys (or queries) in local memory, 4 work-items per row, for GPUs. Both compute the same sums.
//
// Backward, with D_i = Σ_d dO_i[d]·O_i[d] (= Σ_j p_ij·dp_ij, the softmax backward's dot product),
// dp_ij = dO_i·v_j and ds_ij = p_ij·(dp_ij − D_i):
//   dQ_i += scale·Σ_j ds_ij·k_j,   dK_j += scale·Σ_i ds_ij·q_i,   dV_j += Σ_i p_ij·dO_i.
// The dQ kernels also compute D (and store it for the dK/dV kernels, which run after them on the in-order queue);
// every kernel writes only its own rows' columns, so no atomics.

inline float attention_dot(__global const float* a, __global const float* b, int n) {
    float s = 0;
    for (int d = 0; d < n; d++) s += a[d] * b[d];
    return s;
}

// MARK: One work-item per row (CPU devices)

__kernel void attention_forward_rows(__global const float* qkv, __global const int4* heads_table, int total_qk,
                                     int features, int merged, int batch, int tokens, float scale,
                                     __global float* out, __global float* lse) {
    int i = get_global_id(0), item = get_global_id(1);
    if (i >= tokens) return;
    int image = item % batch;
    int4 h = heads_table[item / batch];
    __global const float* rows = qkv + (size_t)image * tokens * features;
    __global const float* q = rows + (size_t)i * features + h.z;
    __global const float* k = rows + total_qk + h.z;
    __global const float* v = rows + 2 * total_qk + h.w;
    // One pass with an online softmax: the output row (owned by this work-item) holds Σ_j e^(s_j − m)·v_j for the
    // running maximum m, rescaled when m grows (a few times per row for typical scores).
    __global float* o = out + ((size_t)image * tokens + i) * merged + h.w;
    for (int d = 0; d < h.y; d++) o[d] = 0;
    float m = -INFINITY, l = 0;
    for (int j = 0; j < tokens; j++) {
        float s = scale * attention_dot(q, k + (size_t)j * features, h.x);
        __global const float* vj = v + (size_t)j * features;
        if (s > m) {
            float correction = exp_vectorizable(m - s);
            l = l * correction + 1;
            for (int d = 0; d < h.y; d++) o[d] = o[d] * correction + vj[d];
            m = s;
        } else {
            float p = exp_vectorizable(s - m);
            l += p;
            for (int d = 0; d < h.y; d++) o[d] += p * vj[d];
        }
    }
    float inverse = 1 / l;
    for (int d = 0; d < h.y; d++) o[d] *= inverse;
    lse[(size_t)item * tokens + i] = m + log(l);
}

__kernel void attention_backward_dq_rows(__global const float* qkv, __global const int4* heads_table, int total_qk,
                                         int features, int merged, int batch, int tokens, float scale,
                                         __global const float* out, __global const float* lse,
                                         __global const float* dout, __global float* delta,
                                         __global float* dqkv) {
    int i = get_global_id(0), item = get_global_id(1);
    if (i >= tokens) return;
    int image = item % batch;
    int4 h = heads_table[item / batch];
    size_t row = (size_t)image * tokens + i;
    __global const float* rows = qkv + (size_t)image * tokens * features;
    __global const float* q = rows + (size_t)i * features + h.z;
    __global const float* k = rows + total_qk + h.z;
    __global const float* v = rows + 2 * total_qk + h.w;
    __global const float* d_o = dout + row * merged + h.w;
    float d_i = attention_dot(d_o, out + row * merged + h.w, h.y);
    delta[(size_t)item * tokens + i] = d_i;
    float lse_i = lse[(size_t)item * tokens + i];
    __global float* dq = dqkv + row * features + h.z;
    for (int j = 0; j < tokens; j++) {
        __global const float* kj = k + (size_t)j * features;
        float p = exp_vectorizable(scale * attention_dot(q, kj, h.x) - lse_i);
        float ds = p * (attention_dot(d_o, v + (size_t)j * features, h.y) - d_i);
        for (int d = 0; d < h.x; d++) dq[d] += scale * ds * kj[d];
    }
}

__kernel void attention_backward_dkv_rows(__global const float* qkv, __global const int4* heads_table,
                                          int total_qk, int features, int merged, int batch, int tokens,
                                          float scale, __global const float* lse, __global const float* dout,
                                          __global const float* delta, __global float* dqkv) {
    int j = get_global_id(0), item = get_global_id(1);
    if (j >= tokens) return;
    int image = item % batch;
    int4 h = heads_table[item / batch];
    __global const float* rows = qkv + (size_t)image * tokens * features;
    __global const float* q = rows + h.z;
    __global const float* kj = rows + (size_t)j * features + total_qk + h.z;
    __global const float* vj = rows + (size_t)j * features + 2 * total_qk + h.w;
    __global float* dk = dqkv + ((size_t)image * tokens + j) * features + total_qk + h.z;
    __global float* dv = dqkv + ((size_t)image * tokens + j) * features + 2 * total_qk + h.w;
    for (int i = 0; i < tokens; i++) {
        __global const float* qi = q + (size_t)i * features;
        __global const float* d_o = dout + ((size_t)image * tokens + i) * merged + h.w;
        size_t at = (size_t)item * tokens + i;
        float p = exp_vectorizable(scale * attention_dot(qi, kj, h.x) - lse[at]);
        float ds = p * (attention_dot(d_o, vj, h.y) - delta[at]);
        for (int d = 0; d < h.y; d++) dv[d] += p * d_o[d];
        for (int d = 0; d < h.x; d++) dk[d] += scale * ds * qi[d];
    }
}

// MARK: Tiles in local memory (GPUs)

// 16 rows per work-group, 4 work-items per row (lane = dims lane, lane+4, …), tiles of 16 on the other side.
// Heads wider than ATT_MAXD take the `_rows` kernels (the backend checks). Rows are padded by one float so that the
// 16 rows of a tile read at the same column fall into different local-memory banks.
// Every ATT_* value can be set as a build option (`-DATT_ROWS=32`, OpenCLAttentionTiles), so that one benchmark run
// on a GPU times several tile shapes with the same source; the work-group size is ATT_ROWS × ATT_LANES.
#ifndef ATT_ROWS
#define ATT_ROWS 16
#endif
#ifndef ATT_TILE
#define ATT_TILE 16
#endif
#ifndef ATT_LANES
#define ATT_LANES 4
#endif
#ifndef ATT_MAXD
#define ATT_MAXD 128
#endif
#define ATT_GROUP (ATT_ROWS * ATT_LANES)
#define ATT_STRIDE (ATT_MAXD + 1)
#define ATT_PER_LANE (ATT_MAXD / ATT_LANES)
#if ATT_MAXD % ATT_LANES != 0
#error "ATT_MAXD must be a multiple of ATT_LANES"
#endif

// Copies `count` rows of `width` floats from global rows `first…` (stride `row_stride`) into a local tile, zeros for
// rows at or beyond `tokens`; consecutive work-items read consecutive addresses.
inline void attention_load_tile(__local float* tile, __global const float* source, size_t row_stride, int first,
                                int count, int tokens, int width) {
    for (int e = get_local_id(0); e < count * width; e += get_local_size(0)) {
        int r = e / width, d = e % width;
        tile[r * ATT_STRIDE + d] = first + r < tokens ? source[(size_t)(first + r) * row_stride + d] : 0;
    }
}

inline float attention_local_dot(__local const float* a, __local const float* b, int n) {
    float s = 0;
    for (int d = 0; d < n; d++) s += a[d] * b[d];
    return s;
}

__kernel __attribute__((reqd_work_group_size(ATT_GROUP, 1, 1)))
void attention_forward_tiled(__global const float* qkv, __global const int4* heads_table, int total_qk,
                             int features, int merged, int batch, int tokens, float scale,
                             __global float* out, __global float* lse) {
    __local float q_tile[ATT_ROWS * ATT_STRIDE];
    __local float k_tile[ATT_TILE * ATT_STRIDE];
    __local float v_tile[ATT_TILE * ATT_STRIDE];
    __local float s_tile[ATT_ROWS * (ATT_TILE + 1)];
    int lid = get_local_id(0), r = lid / ATT_LANES, lane = lid % ATT_LANES;
    int first = get_group_id(0) * ATT_ROWS, item = get_group_id(1);
    int image = item % batch;
    int4 h = heads_table[item / batch];
    __global const float* rows = qkv + (size_t)image * tokens * features;
    attention_load_tile(q_tile, rows + h.z, features, first, ATT_ROWS, tokens, h.x);
    float m = -INFINITY, l = 0;
    float o[ATT_PER_LANE];
    for (int c = 0; c < ATT_PER_LANE; c++) o[c] = 0;
    for (int j0 = 0; j0 < tokens; j0 += ATT_TILE) {
        barrier(CLK_LOCAL_MEM_FENCE);  // the previous tile is no longer read
        attention_load_tile(k_tile, rows + total_qk + h.z, features, j0, ATT_TILE, tokens, h.x);
        attention_load_tile(v_tile, rows + 2 * total_qk + h.w, features, j0, ATT_TILE, tokens, h.y);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = lane; jj < ATT_TILE; jj += ATT_LANES) {
            float s = j0 + jj < tokens
                ? scale * attention_local_dot(q_tile + r * ATT_STRIDE, k_tile + jj * ATT_STRIDE, h.x) : -INFINITY;
            s_tile[r * (ATT_TILE + 1) + jj] = s;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        // Online softmax: every lane of a row reads the row's 16 scores and keeps the same m and l.
        float tile_max = m;
        for (int jj = 0; jj < ATT_TILE; jj++) tile_max = fmax(tile_max, s_tile[r * (ATT_TILE + 1) + jj]);
        float correction = exp(m - tile_max);
        l *= correction;
        for (int c = 0; c < ATT_PER_LANE; c++) o[c] *= correction;
        for (int jj = 0; jj < ATT_TILE; jj++) {
            float p = exp(s_tile[r * (ATT_TILE + 1) + jj] - tile_max);
            l += p;
            for (int c = 0; c < ATT_PER_LANE; c++) {
                int d = lane + ATT_LANES * c;
                if (d < h.y) o[c] += p * v_tile[jj * ATT_STRIDE + d];
            }
        }
        m = tile_max;
    }
    int i = first + r;
    if (i < tokens) {
        __global float* row_out = out + ((size_t)image * tokens + i) * merged + h.w;
        float inverse = 1 / l;
        for (int c = 0; c < ATT_PER_LANE; c++) {
            int d = lane + ATT_LANES * c;
            if (d < h.y) row_out[d] = o[c] * inverse;
        }
        if (lane == 0) lse[(size_t)item * tokens + i] = m + log(l);
    }
}

__kernel __attribute__((reqd_work_group_size(ATT_GROUP, 1, 1)))
void attention_backward_dq_tiled(__global const float* qkv, __global const int4* heads_table, int total_qk,
                                 int features, int merged, int batch, int tokens, float scale,
                                 __global const float* out, __global const float* lse,
                                 __global const float* dout, __global float* delta, __global float* dqkv) {
    __local float q_tile[ATT_ROWS * ATT_STRIDE];
    __local float do_tile[ATT_ROWS * ATT_STRIDE];
    __local float k_tile[ATT_TILE * ATT_STRIDE];
    __local float v_tile[ATT_TILE * ATT_STRIDE];
    __local float ds_tile[ATT_ROWS * (ATT_TILE + 1)];
    __local float delta_parts[ATT_ROWS * ATT_LANES];
    int lid = get_local_id(0), r = lid / ATT_LANES, lane = lid % ATT_LANES;
    int first = get_group_id(0) * ATT_ROWS, item = get_group_id(1);
    int image = item % batch;
    int4 h = heads_table[item / batch];
    __global const float* rows = qkv + (size_t)image * tokens * features;
    attention_load_tile(q_tile, rows + h.z, features, first, ATT_ROWS, tokens, h.x);
    attention_load_tile(do_tile, dout + (size_t)image * tokens * merged + h.w, merged, first, ATT_ROWS, tokens, h.y);
    barrier(CLK_LOCAL_MEM_FENCE);
    // D_i = dO_i·O_i: each lane sums its dims, then the row's lanes are added.
    int i = first + r;
    float part = 0;
    if (i < tokens) {
        __global const float* o = out + ((size_t)image * tokens + i) * merged + h.w;
        for (int d = lane; d < h.y; d += ATT_LANES) part += o[d] * do_tile[r * ATT_STRIDE + d];
    }
    delta_parts[lid] = part;
    barrier(CLK_LOCAL_MEM_FENCE);
    float d_i = 0;
    for (int c = 0; c < ATT_LANES; c++) d_i += delta_parts[r * ATT_LANES + c];
    float lse_i = i < tokens ? lse[(size_t)item * tokens + i] : 0;
    if (i < tokens && lane == 0) delta[(size_t)item * tokens + i] = d_i;
    float dq[ATT_PER_LANE];
    for (int c = 0; c < ATT_PER_LANE; c++) dq[c] = 0;
    for (int j0 = 0; j0 < tokens; j0 += ATT_TILE) {
        barrier(CLK_LOCAL_MEM_FENCE);
        attention_load_tile(k_tile, rows + total_qk + h.z, features, j0, ATT_TILE, tokens, h.x);
        attention_load_tile(v_tile, rows + 2 * total_qk + h.w, features, j0, ATT_TILE, tokens, h.y);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = lane; jj < ATT_TILE; jj += ATT_LANES) {
            float ds = 0;
            if (i < tokens && j0 + jj < tokens) {
                float s = scale * attention_local_dot(q_tile + r * ATT_STRIDE, k_tile + jj * ATT_STRIDE, h.x);
                float dp = attention_local_dot(do_tile + r * ATT_STRIDE, v_tile + jj * ATT_STRIDE, h.y);
                ds = exp(s - lse_i) * (dp - d_i);
            }
            ds_tile[r * (ATT_TILE + 1) + jj] = ds;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = 0; jj < ATT_TILE; jj++) {
            float ds = ds_tile[r * (ATT_TILE + 1) + jj];
            for (int c = 0; c < ATT_PER_LANE; c++) {
                int d = lane + ATT_LANES * c;
                if (d < h.x) dq[c] += ds * k_tile[jj * ATT_STRIDE + d];
            }
        }
    }
    if (i < tokens) {
        __global float* row_dq = dqkv + ((size_t)image * tokens + i) * features + h.z;
        for (int c = 0; c < ATT_PER_LANE; c++) {
            int d = lane + ATT_LANES * c;
            if (d < h.x) row_dq[d] += scale * dq[c];
        }
    }
}

__kernel __attribute__((reqd_work_group_size(ATT_GROUP, 1, 1)))
void attention_backward_dkv_tiled(__global const float* qkv, __global const int4* heads_table, int total_qk,
                                  int features, int merged, int batch, int tokens, float scale,
                                  __global const float* lse, __global const float* dout,
                                  __global const float* delta, __global float* dqkv) {
    __local float k_tile[ATT_ROWS * ATT_STRIDE];
    __local float v_tile[ATT_ROWS * ATT_STRIDE];
    __local float q_tile[ATT_TILE * ATT_STRIDE];
    __local float do_tile[ATT_TILE * ATT_STRIDE];
    __local float p_tile[ATT_ROWS * (ATT_TILE + 1)];
    __local float ds_tile[ATT_ROWS * (ATT_TILE + 1)];
    __local float lse_tile[ATT_TILE];
    __local float delta_tile[ATT_TILE];
    int lid = get_local_id(0), r = lid / ATT_LANES, lane = lid % ATT_LANES;
    int first = get_group_id(0) * ATT_ROWS, item = get_group_id(1);
    int image = item % batch;
    int4 h = heads_table[item / batch];
    __global const float* rows = qkv + (size_t)image * tokens * features;
    attention_load_tile(k_tile, rows + total_qk + h.z, features, first, ATT_ROWS, tokens, h.x);
    attention_load_tile(v_tile, rows + 2 * total_qk + h.w, features, first, ATT_ROWS, tokens, h.y);
    int j = first + r;
    float dk[ATT_PER_LANE], dv[ATT_PER_LANE];
    for (int c = 0; c < ATT_PER_LANE; c++) { dk[c] = 0; dv[c] = 0; }
    for (int i0 = 0; i0 < tokens; i0 += ATT_TILE) {
        barrier(CLK_LOCAL_MEM_FENCE);
        attention_load_tile(q_tile, rows + h.z, features, i0, ATT_TILE, tokens, h.x);
        attention_load_tile(do_tile, dout + (size_t)image * tokens * merged + h.w, merged, i0, ATT_TILE, tokens,
                            h.y);
        for (int e = lid; e < ATT_TILE; e += ATT_GROUP) {
            size_t at = (size_t)item * tokens + i0 + e;
            lse_tile[e] = i0 + e < tokens ? lse[at] : 0;
            delta_tile[e] = i0 + e < tokens ? delta[at] : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int ii = lane; ii < ATT_TILE; ii += ATT_LANES) {
            float p = 0, ds = 0;
            if (j < tokens && i0 + ii < tokens) {
                float s = scale * attention_local_dot(q_tile + ii * ATT_STRIDE, k_tile + r * ATT_STRIDE, h.x);
                p = exp(s - lse_tile[ii]);
                float dp = attention_local_dot(do_tile + ii * ATT_STRIDE, v_tile + r * ATT_STRIDE, h.y);
                ds = p * (dp - delta_tile[ii]);
            }
            p_tile[r * (ATT_TILE + 1) + ii] = p;
            ds_tile[r * (ATT_TILE + 1) + ii] = ds;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int ii = 0; ii < ATT_TILE; ii++) {
            float p = p_tile[r * (ATT_TILE + 1) + ii], ds = ds_tile[r * (ATT_TILE + 1) + ii];
            for (int c = 0; c < ATT_PER_LANE; c++) {
                int d = lane + ATT_LANES * c;
                if (d < h.y) dv[c] += p * do_tile[ii * ATT_STRIDE + d];
                if (d < h.x) dk[c] += ds * q_tile[ii * ATT_STRIDE + d];
            }
        }
    }
    if (j < tokens) {
        __global float* row = dqkv + ((size_t)image * tokens + j) * features;
        for (int c = 0; c < ATT_PER_LANE; c++) {
            int d = lane + ATT_LANES * c;
            if (d < h.x) row[total_qk + h.z + d] += scale * dk[c];
            if (d < h.y) row[2 * total_qk + h.w + d] += dv[c];
        }
    }
}
