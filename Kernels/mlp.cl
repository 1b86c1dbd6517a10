// Bias + exact (erf) GELU, as PyTorch's nn.GELU(): gelu(x) = x·Φ(x), Φ(x) = ½·erfc(−x/√2).
//
// PoCL's built-in erf is ~27x slower than the rest of this kernel (not vectorised), so Φ comes from a Chebyshev
// fit of erfc (Numerical Recipes' erfcc, W. H. Press et al.), whose *relative* error is below 1.2e-7 for every
// argument. Relative accuracy of erfc matters: for x ≪ 0, gelu(x) = x·½·erfc(|x|/√2) is tiny, and an erf-based
// formula (1 + erf) would cancel to noise there; with erfc the left tail keeps ~6-7 significant digits and the
// right side's absolute error stays below 1e-7 (checked against float64 erfc in OpenCLBackendTests).

// exp_vectorizable(c − a²/2) to float precision even where a²/2 is large. Rounding a² (and then the sum with c) to float
// costs a relative error of about (a²/2)·6e-8 in the result, 1e-6 at a = 6; the rounding errors are recovered
// exactly (fma for the product, Knuth's two-sum for the addition) and applied as a first-order correction factor.
// This needs IEEE addition (no -cl-fast-relaxed-math, which may fold the two-sum away).
inline float exp_minus_half_square_plus(float a, float c) {
    float square = a * a;
    float square_error = fma(a, a, -square);       // a² = square + square_error exactly
    float half_square = -0.5f * square;            // exact: scaling by a power of two
    float exponent = half_square + c;
    float recovered = exponent - half_square;      // two-sum: exponent + exponent_error == half_square + c
    float exponent_error = (half_square - (exponent - recovered)) + (c - recovered);
    return exp_vectorizable(exponent) * (1.0f + exponent_error - 0.5f * square_error);
}

// Φ(u), the standard normal CDF, from erfc(|u|/√2) = t·exp_vectorizable(−u²/2 + P(t)), t = 1/(1 + |u|/(2√2)).
inline float normal_cdf(float u) {
    float a = fabs(u);
    float t = 1.0f / (1.0f + 0.35355339059327376f * a);
    float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f +
                 t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f +
                 t * 0.17087277f))))))));
    float tail = 0.5f * t * exp_minus_half_square_plus(a, poly);
    return u >= 0 ? 1.0f - tail : tail;
}

__kernel void bias_gelu_forward(__global const float* x, __global const float* bias, __global float* out,
                                int rows, int cols) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows) return;
    size_t i = (size_t)r * cols + c;
    float u = x[i] + bias[c];
    out[i] = u * normal_cdf(u);
}

// gelu'(u) = Φ(u) + u·φ(u), φ the standard normal density.
__kernel void bias_gelu_backward(__global const float* dout, __global const float* x, __global const float* bias,
                                 __global float* dx, int rows, int cols) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows) return;
    size_t i = (size_t)r * cols + c;
    float u = x[i] + bias[c];
    float density = 0.39894228040143268f * exp_minus_half_square_plus(u, 0.0f);
    dx[i] += (normal_cdf(u) + u * density) * dout[i];
}
