// AdamW as torch.optim.AdamW (decoupled weight decay, bias-corrected moments):
//   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)
// The bias corrections are computed on the host in float64 and passed in. ε is added to √v̂ = √v / √(1−β2ᵗ), as
// torch does; adding it to √v instead scales ε by √(1−β2ᵗ), which changes the first steps when gradients are tiny.
// Where has_mask is set and mask[i] == 0 the element is a pruned weight: parameter and moments stay as they are, so
// a pruned weight cannot be revived by weight decay or by stale moments.
// Where skip_index ≥ 0 and the float64 flag at skip[skip_index] (read as two 32-bit words: no fp64 needed) is not
// zero, nothing is updated: the trainer's non-finite-loss flag freezes the weights until the host reads it.
__kernel void adamw_step(__global float* param, __global const float* grad, __global float* m, __global float* v,
                         __global const float* mask, int has_mask, __global const uint* skip, int skip_index,
                         int count,
                         float learning_rate, float beta1, float beta2, float eps, float weight_decay,
                         float bias_correction1, float sqrt_bias_correction2) {
    int i = get_global_id(0);
    if (i >= count) return;
    if (has_mask && mask[i] == 0.0f) return;
    if (skip_index >= 0 && (skip[2 * skip_index] | skip[2 * skip_index + 1]) != 0) return;
    float g = grad[i];
    float m_new = beta1 * m[i] + (1.0f - beta1) * g;
    float v_new = beta2 * v[i] + (1.0f - beta2) * g * g;
    float p = param[i] * (1.0f - learning_rate * weight_decay);
    float denom = sqrt(v_new) / sqrt_bias_correction2 + eps;
    param[i] = p - (learning_rate / bias_correction1) * (m_new / denom);
    m[i] = m_new;
    v[i] = v_new;
}
