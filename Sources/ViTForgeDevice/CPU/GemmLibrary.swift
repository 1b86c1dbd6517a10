import CBLAS
import CGemmDNNL
#if canImport(Glibc)
import Glibc
#endif

/// The library behind the CPU backend's matrix products (issue 31, part 2). Measured at every GEMM shape of a ViT
/// forward and backward (`Benchmarks/gemm_libs.c`, Benchmarks/README.md "GEMM libraries"): oneDNN's sgemm was
/// faster than OpenBLAS's at most linear-layer shapes on the machine it was measured on, OpenBLAS at the smallest
/// attention products; BLIS and libxsmm won too few shapes to be worth a dependency.
public enum GemmLibrary: String, Sendable, CaseIterable {
    case openblas
    case onednn

    var label: String {
        switch self {
        case .openblas: "OpenBLAS"
        case .onednn: "oneDNN"
        }
    }

    /// One row-major product on the calling thread, the operands already at their offsets.
    @inline(__always)
    func run(_ spec: GemmSpec, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        // oneDNN 2.6 leaves C as it is when k = 0 instead of scaling it by beta (the op table's `gemm NN 13×0·0×7`
        // row); OpenBLAS does what the spec says, and costs nothing there.
        switch spec.k == 0 ? .openblas : self {
        case .openblas:
            cblas_sgemm(CblasRowMajor, spec.transA ? CblasTrans : CblasNoTrans, spec.transB ? CblasTrans : CblasNoTrans,
                        blasInt(spec.m), blasInt(spec.n), blasInt(spec.k), spec.alpha, a, blasInt(spec.lda), b,
                        blasInt(spec.ldb), spec.beta, c, blasInt(spec.ldc))
        case .onednn:
            // The entry point has checked every size and offset; a failure here is a broken installation.
            let status = vitforge_dnnl_sgemm(spec.transA ? 1 : 0, spec.transB ? 1 : 0, spec.m, spec.n, spec.k,
                                             spec.alpha, a, spec.lda, b, spec.ldb, spec.beta, c, spec.ldc)
            // (`GemmSelection` refuses oneDNN on a machine without it, so -1 does not reach here either.)
            precondition(status == 0, "oneDNN's sgemm failed with status \(status) on \(spec)")
        }
    }

    /// oneDNN's version ("2.6.3"), nil when it cannot be loaded (`oneDNNProblem` says why).
    public static let oneDNNVersion: String? = vitforge_dnnl_version().map { String(cString: $0) }

    /// Why oneDNN cannot be used on this machine (not installed, or not a oneDNN), one line; nil when it can.
    public static let oneDNNProblem: String? = vitforge_dnnl_problem().map { String(cString: $0) }
}

/// How the CPU backend picks the library of each product: one library for all (`VITFORGE_GEMM=openblas` or
/// `onednn`), or per shape (`auto`) from a table measured once per machine and kept in a file (`GemmChoiceTable`).
/// The default is oneDNN where it is installed, else OpenBLAS (`standard`): one library for every product, so that
/// results depend on no timing. oneDNN is the default because it won end to end on a quiet machine (1.07-1.13x
/// OpenBLAS on DeiT-Tiny at batch 1 and 64, inference and training step; `auto` was no faster: Benchmarks/README.md,
/// "The default GEMM library"). With `auto` results depend on the table, which the backend's name (in bench JSON and
/// reports) names.
public enum GemmSelection: Sendable, Equatable, CustomStringConvertible {
    case pinned(GemmLibrary)
    case auto

    /// The environment variable that pins the selection.
    public static let variable = "VITFORGE_GEMM"

    /// The selection when `VITFORGE_GEMM` is not set: oneDNN for every product where it can be loaded, else
    /// OpenBLAS (a machine without `libdnnl2` runs as before, and the backend's name says which ran).
    public static var standard: GemmSelection { .pinned(GemmLibrary.oneDNNProblem == nil ? .onednn : .openblas) }

    /// `VITFORGE_GEMM` (unset or empty: `standard`); the problem on a value it does not know, or on a library
    /// this machine does not have.
    public static func fromEnvironment() -> Result<GemmSelection, GemmSelectionError> {
        guard let text = environmentValue else { return .success(standard) }
        return parse(text).flatMap { selection in
            selection.problem.map { .failure(GemmSelectionError(value: text, problem: $0)) } ?? .success(selection)
        }
    }

    /// Whether `VITFORGE_GEMM` is set (not empty): the user chose, and a resumed checkpoint does not override it.
    public static var isPinnedByEnvironment: Bool { environmentValue != nil }

    private static var environmentValue: String? {
        guard let raw = getenv(variable), raw.pointee != 0 else { return nil }
        return String(cString: raw)
    }

    public static func parse(_ text: String) -> Result<GemmSelection, GemmSelectionError> {
        let value = text.lowercased()
        if value == "auto" { return .success(.auto) }
        if let library = GemmLibrary(rawValue: value) { return .success(.pinned(library)) }
        return .failure(GemmSelectionError(value: text,
                                           problem: "unknown GEMM library (expected openblas, onednn or auto)"))
    }

    /// Why this machine cannot run the selection (oneDNN missing), nil when it can.
    public var problem: String? { self == .pinned(.openblas) ? nil : GemmLibrary.oneDNNProblem }

    /// The `VITFORGE_GEMM` value that selects it: "openblas", "onednn" or "auto" (reports, checkpoints).
    public var setting: String {
        switch self {
        case .pinned(let library): library.rawValue
        case .auto: "auto"
        }
    }

    /// The file of `auto`'s per-shape choices on this machine (nil without a cache folder: measured every run).
    public static var choiceFile: String? { GemmChoiceTable.shared.path }

    /// For `vitforge devices` and bench: "openblas", "onednn (oneDNN 2.6.3)", "auto (per shape, ... FILE)".
    public var description: String {
        let version = GemmLibrary.oneDNNVersion.map { "oneDNN \($0)" } ?? "oneDNN missing"
        switch self {
        case .pinned(.openblas): return "openblas"
        case .pinned(.onednn): return "onednn (\(version))"
        case .auto: return "auto (OpenBLAS or \(version) per shape, choices in \(Self.choiceFile ?? "memory only"))"
        }
    }

    /// What the backend's name says about it, e.g. "oneDNN" or "GEMM auto per shape (OpenBLAS/oneDNN 2.6.3)".
    var label: String {
        switch self {
        case .pinned(let library): library.label
        case .auto: "GEMM auto per shape (OpenBLAS/oneDNN \(GemmLibrary.oneDNNVersion ?? "missing"))"
        }
    }
}

public struct GemmSelectionError: Error, CustomStringConvertible {
    public let value: String
    public let problem: String
    public var description: String { "\(GemmSelection.variable)=\(value): \(problem)" }
}
