// Vectorised exp and the erf-based GELU pieces for the CPU loops. glibc's expf/erff are one call per element
// (~10–20 ns, never vectorised from Swift); softmax and GELU called them ~200 M times per DeiT-Tiny batch-64 forward,
// about a third of its time (perf, before this file). These run 8 lanes per AVX2 instruction.
//
// Accuracy (float32, measured against float64 in BackendOpTests): exp ≤ 2 ulp on [−87, 88]; the normal CDF
// Φ(u) = ½·erfc(−u/√2) within 1.5e-7 absolute (Abramowitz & Stegun 7.1.26), computed as erfc on |z| so that the
// tail u ≪ 0 is a product, not 1 − erf (no cancellation).

typealias FloatVector = SIMD8<Float>

@inline(__always)
func loadVector(_ p: UnsafePointer<Float>) -> FloatVector {
    UnsafeRawPointer(p).loadUnaligned(as: FloatVector.self)
}

@inline(__always)
func storeVector(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: FloatVector.self)
}

/// The first `count` (< 8) elements of `p` in the low lanes, `fill` elsewhere.
@inline(__always)
func loadPartialVector(_ p: UnsafePointer<Float>, _ count: Int, fill: Float = 0) -> FloatVector {
    var v = FloatVector(repeating: fill)
    for i in 0 ..< count { v[i] = p[i] }
    return v
}

@inline(__always)
func storePartialVector(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
    for i in 0 ..< count { p[i] = v[i] }
}

/// e^x per lane: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to r⁷ (truncation (ln2/2)⁸/8! ≈ 5e-9),
/// times 2ⁿ built in the exponent bits. Lanes below −87.3 give 0 (expf gives a denormal there, < 1.2e-38).
///
/// n is rounded by adding 1.5·2²³ (the float's last mantissa bit is then 1), which also leaves n in the low
/// mantissa bits: no float→int conversion, which Swift's generic SIMD conversion does lane by lane.
///
/// `@_transparent`, not `@inline(__always)`: with the latter the compiler still emitted one out-of-line copy that
/// every GELU and softmax loop called (each call splitting the vector into two halves and back, plus vzeroupper),
/// 5.3% of an fm-vit-c training step's samples; inlined, GELU + exp + softmax fell from 20% to 16% of the samples
/// of OpenBLAS's sgemm kernel (perf, same binary otherwise).
@_transparent
func vectorExp(_ x: FloatVector) -> FloatVector {
    var clamped = x.replacing(with: -87.3, where: x .< -87.3)
    clamped = clamped.replacing(with: 88.7, where: clamped .> 88.7)
    let shifted = clamped * 1.442_695_04 + 12_582_912
    let n = shifted - 12_582_912
    // ln 2 split in two so that n·ln2_hi is exact for |n| ≤ 128.
    let r = clamped - n * 0.693_145_751_953_125 - n * 1.428_606_765_330_187e-6
    var p = FloatVector(repeating: 1.0 / 5040)
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    // bits(shifted) = 0x4B40_0000 + n, so the biased exponent n + 127 is bits − 0x4B40_0000 + 127.
    let exponent = (unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- (0x4B40_0000 - 127)) &<< 23
    let scaled = p * unsafeBitCast(exponent, to: FloatVector.self)
    return scaled.replacing(with: 0, where: x .< -87.3)
}

/// Φ(u) (the standard normal CDF) and e^(−u²/2) per lane, the two factors of GELU and its derivative.
@inline(__always)
func vectorNormalCDF(_ u: FloatVector) -> (cdf: FloatVector, gaussian: FloatVector) {
    let magnitude = unsafeBitCast(unsafeBitCast(u, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: FloatVector.self)
    let a = magnitude * 0.707_106_781_186_547_5  // |z|, z = u/√2
    let t = 1 / (1 + 0.327_591_1 * a)
    var poly = FloatVector(repeating: 1.061_405_429)
    poly = poly * t - 1.453_152_027
    poly = poly * t + 1.421_413_741
    poly = poly * t - 0.284_496_736
    poly = poly * t + 0.254_829_592
    poly = poly * t
    let gaussian = vectorExp(-a * a)
    let halfErfc = 0.5 * poly * gaussian  // ½·erfc(|z|)
    return ((1 - halfErfc).replacing(with: halfErfc, where: u .< 0), gaussian)
}
