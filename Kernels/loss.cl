// Classification losses, one row (image) per work-item, and the `_wg` forwards with one work-group per row for GPUs
// (see layernorm.cl). Log-probabilities are formed as (z − max) − log Σ exp_vectorizable(z − max) rather than
// log(softmax): log of an underflowed probability would be −Inf and 0·(−Inf) = NaN in the sums.

// Cross-entropy against y = (1−ε)·onehot(label) + ε/C:
// loss = −(1−ε)·log p[label] − (ε/C)·Σ_c log p[c]. A label outside [0, C) makes the row's loss NaN.
__kernel void cross_entropy_forward(__global const float* logits, __global const int* labels,
                                    __global float* probs, __global float* losses,
                                    int rows, int classes, float smoothing) {
    int r = get_global_id(0);
    if (r >= rows) return;
    __global const float* z = logits + (size_t)r * classes;
    __global float* p = probs + (size_t)r * classes;
    float max_value = -INFINITY;
    for (int c = 0; c < classes; c++) max_value = fmax(max_value, z[c]);
    float total = 0;
    acc_t sum_shifted = 0;
    for (int c = 0; c < classes; c++) {
        float shifted = z[c] - max_value;
        float e = exp_vectorizable(shifted);
        p[c] = e;
        total += e;
        sum_shifted += shifted;
    }
    float log_total = log(total);
    float inv_total = 1.0f / total;
    for (int c = 0; c < classes; c++) p[c] *= inv_total;
    int label = labels[r];
    if (label < 0 || label >= classes) { losses[r] = NAN; return; }
    float log_p_label = (z[label] - max_value) - log_total;
    float sum_log_p = (float)(sum_shifted - (acc_t)classes * log_total);
    losses[r] = -(1.0f - smoothing) * log_p_label - (smoothing / classes) * sum_log_p;
}

// The GPU shape of cross_entropy_forward: one work-group per row (see layernorm.cl), same arguments and results.
__kernel void cross_entropy_forward_wg(__global const float* logits, __global const int* labels,
                                       __global float* probs, __global float* losses,
                                       int rows, int classes, float smoothing) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
    __global const float* z = logits + (size_t)r * classes;
    __global float* p = probs + (size_t)r * classes;
    float max_value = -INFINITY;
    for (int c = lid; c < classes; c += step) max_value = fmax(max_value, z[c]);
    max_value = group_max(max_value, scratch);
    float2 sums = (float2)(0);  // (Σ exp(z − max), Σ (z − max))
    for (int c = lid; c < classes; c += step) {
        float shifted = z[c] - max_value;
        float e = exp_vectorizable(shifted);
        p[c] = e;
        sums += (float2)(e, shifted);
    }
    sums = group_sum2(sums, scratch);
    float log_total = log(sums.x);
    float inv_total = 1.0f / sums.x;
    for (int c = lid; c < classes; c += step) p[c] *= inv_total;
    if (lid != 0) return;  // after the last barrier: only the loss is left
    int label = labels[r];
    if (label < 0 || label >= classes) { losses[r] = NAN; return; }
    float log_p_label = (z[label] - max_value) - log_total;
    float sum_log_p = sums.y - classes * log_total;
    losses[r] = -(1.0f - smoothing) * log_p_label - (smoothing / classes) * sum_log_p;
}

__kernel void cross_entropy_backward(__global const float* probs, __global const int* labels,
                                     __global float* dlogits, int rows, int classes, float smoothing, float scale) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= classes || r >= rows) return;
    size_t i = (size_t)r * classes + c;
    int label = labels[r];
    if (label < 0 || label >= classes) { dlogits[i] = NAN; return; }
    float target = (c == label ? 1.0f - smoothing : 0.0f) + smoothing / classes;
    dlogits[i] += scale * (probs[i] - target);
}

// Distillation loss T²·KL(pt ‖ ps) with ps = softmax(s/T), pt = softmax(t/T); both softmaxes are saved.
__kernel void distillation_forward(__global const float* student, __global const float* teacher,
                                   __global float* student_probs, __global float* teacher_probs,
                                   __global float* losses, int rows, int classes, float temperature) {
    int r = get_global_id(0);
    if (r >= rows) return;
    size_t base = (size_t)r * classes;
    float inv_t = 1.0f / temperature;
    float max_s = -INFINITY, max_t = -INFINITY;
    for (int c = 0; c < classes; c++) {
        max_s = fmax(max_s, student[base + c] * inv_t);
        max_t = fmax(max_t, teacher[base + c] * inv_t);
    }
    float total_s = 0, total_t = 0;
    for (int c = 0; c < classes; c++) {
        float es = exp_vectorizable(student[base + c] * inv_t - max_s);
        float et = exp_vectorizable(teacher[base + c] * inv_t - max_t);
        student_probs[base + c] = es;
        teacher_probs[base + c] = et;
        total_s += es;
        total_t += et;
    }
    float log_total_s = log(total_s), log_total_t = log(total_t);
    float inv_s = 1.0f / total_s, inv_t_total = 1.0f / total_t;
    acc_t kl = 0;
    for (int c = 0; c < classes; c++) {
        float log_ps = (student[base + c] * inv_t - max_s) - log_total_s;
        float log_pt = (teacher[base + c] * inv_t - max_t) - log_total_t;
        float pt = teacher_probs[base + c] * inv_t_total;
        student_probs[base + c] *= inv_s;
        teacher_probs[base + c] = pt;
        kl += pt * (log_pt - log_ps);
    }
    losses[r] = temperature * temperature * (float)kl;
}

__kernel void distillation_backward(__global const float* student_probs, __global const float* teacher_probs,
                                    __global float* dstudent, int count, float factor) {
    int i = get_global_id(0);
    if (i >= count) return;
    dstudent[i] += factor * (student_probs[i] - teacher_probs[i]);
}

__kernel void distillation_forward_wg(__global const float* student, __global const float* teacher,
                                      __global float* student_probs, __global float* teacher_probs,
                                      __global float* losses, int rows, int classes, float temperature) {
    __local float2 scratch[ROW_GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
    size_t base = (size_t)r * classes;
    float inv_t = 1.0f / temperature;
    float2 maxima = (float2)(-INFINITY);  // (student, teacher)
    for (int c = lid; c < classes; c += step) {
        maxima = fmax(maxima, (float2)(student[base + c], teacher[base + c]) * inv_t);
    }
    maxima = group_reduce2(maxima, 1, scratch);
    float2 totals = (float2)(0);
    for (int c = lid; c < classes; c += step) {
        float es = exp_vectorizable(student[base + c] * inv_t - maxima.x);
        float et = exp_vectorizable(teacher[base + c] * inv_t - maxima.y);
        student_probs[base + c] = es;
        teacher_probs[base + c] = et;
        totals += (float2)(es, et);
    }
    totals = group_sum2(totals, scratch);
    float log_total_s = log(totals.x), log_total_t = log(totals.y);
    float inv_s = 1.0f / totals.x, inv_t_total = 1.0f / totals.y;
    float kl = 0;
    for (int c = lid; c < classes; c += step) {
        float log_ps = (student[base + c] * inv_t - maxima.x) - log_total_s;
        float log_pt = (teacher[base + c] * inv_t - maxima.y) - log_total_t;
        float pt = teacher_probs[base + c] * inv_t_total;
        student_probs[base + c] *= inv_s;
        teacher_probs[base + c] = pt;
        kl += pt * (log_pt - log_ps);
    }
    kl = group_sum(kl, scratch);
    if (lid == 0) losses[r] = temperature * temperature * kl;
}
