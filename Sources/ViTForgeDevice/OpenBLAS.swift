import CBLAS
import Foundation

/// Bare OpenBLAS, for the benchmarks that compare the CPU backend with the library it wraps (CBLAS is a system
/// module and cannot be a product of its own).
public enum OpenBLAS {
    /// OpenBLAS's worker thread count (`openblas_set_num_threads`).
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

    /// OpenBLAS's name for the CPU core it optimised for, e.g. `Cooperlake`.
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// A warning when OpenBLAS runs kernels older than the CPU supports (nil when it does not): its kernels are
    /// chosen when the library loads, from the CPU or from `OPENBLAS_CORETYPE`, and Haswell's AVX2 kernels on an
    /// AVX-512 CPU run GEMM at about 0.6× (a 6-block 192-wide ViT fell from ~2× PyTorch to ~1.25× that way).
    public static var coreWarning: String? {
        let flags = cpuFlags()
        return coreWarning(core: coreName, cpuFlags: flags,
                           forcedCore: ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"])
    }

    /// The vector tier of an OpenBLAS core name (3: AVX-512, 2: AVX2, 1: AVX, 0: older or unknown).
    static func tier(ofCore name: String) -> Int {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 3
        case "haswell", "zen", "excavator", "steamroller": return 2
        case "sandybridge", "bulldozer", "piledriver": return 1
        default: return 0
        }
    }

    /// The vector tier the CPU supports, from `/proc/cpuinfo` flags.
    static func tier(ofFlags flags: Set<String>) -> Int {
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) { return 3 }
        if flags.contains("avx2") && flags.contains("fma") { return 2 }
        return flags.contains("avx") ? 1 : 0
    }

    static func coreWarning(core: String, cpuFlags: Set<String>, forcedCore: String?) -> String? {
        let names = [1: "AVX", 2: "AVX2", 3: "AVX-512"]
        let (used, supported) = (tier(ofCore: core), tier(ofFlags: cpuFlags))
        guard used > 0, supported > used, let usedName = names[used], let supportedName = names[supported] else {
            return nil
        }
        let cause = forcedCore.map { "OPENBLAS_CORETYPE=\($0) is set; unset it for OpenBLAS's own choice" }
            ?? "this OpenBLAS does not know the CPU; a newer one would use its \(supportedName) kernels"
        return "OpenBLAS runs its \(core) (\(usedName)) kernels on a CPU with \(supportedName): GEMM is slower than "
            + "it could be (\(cause))"
    }

    static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(line.split(separator: " ").map(String.init))
    }

    /// Row-major `C = alpha·op(A)·op(B) + beta·C`, straight into `cblas_sgemm`.
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
