#ifndef VITFORGE_FMA_PEAK_H
#define VITFORGE_FMA_PEAK_H

/// The widest fused multiply-add this CPU runs (checked at run time, not at build time).
typedef enum {
    VFPeakScalar = 0,   // no x86 FMA (another architecture, or a CPU without FMA): 16 multiply-adds in plain C
    VFPeakAVX2 = 1,     // 256-bit FMA3
    VFPeakAVX512 = 2,   // 512-bit AVX-512F
} VFPeakISA;

VFPeakISA vf_peak_isa(void);

/// Runs `iterations` rounds of independent register-only fused multiply-adds with the given ISA (which must be
/// supported: see vf_peak_isa) and returns the float FLOPs done (2 per lane per FMA). `sink` receives a value
/// computed from every accumulator, so that the compiler cannot drop the loop.
double vf_peak_run(VFPeakISA isa, long iterations, float *sink);

#endif
