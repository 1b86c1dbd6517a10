#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import ViTForgeDevice

// `VITFORGE_GEMM` and the per-shape table behind `auto` (issue 31, part 2). The libraries' products themselves are
// checked by the op table, which runs on a oneDNN-pinned backend too (`TestBackends.all`).
@Suite("GEMM library choice")
struct GemmChoiceTests {
    @Test("VITFORGE_GEMM values: the libraries, auto, and one line for anything else")
    func parsing() throws {
        #expect(try GemmSelection.parse("openblas").get() == .pinned(.openblas))
        #expect(try GemmSelection.parse("oneDNN").get() == .pinned(.onednn))
        #expect(try GemmSelection.parse("auto").get() == .auto)
        guard case .failure(let error) = GemmSelection.parse("mkl") else {
            Issue.record("mkl was accepted")
            return
        }
        #expect(error.description == "VITFORGE_GEMM=mkl: unknown GEMM library (expected openblas, onednn or auto)")
    }

    @Test("the backend's name records a GEMM library other than OpenBLAS")
    func names() {
        #expect(CPUBackend(threads: 2, gemm: .pinned(.openblas)).name == "cpu (OpenBLAS, 2 threads)")
        #expect(CPUBackend(threads: 2, gemm: .pinned(.onednn)).name == "cpu (oneDNN, 2 threads)")
        #expect(CPUBackend(threads: 1, gemm: .auto).name.hasPrefix("cpu (GEMM auto per shape"))
    }

    @Test("a choice read from the file is used as it is, and a measured one is written back")
    func fileRoundTrip() throws {
        let path = "/tmp/vitforge-gemm-choice-test-\(getpid()).txt"
        defer { unlink(path) }
        var known = GemmSpec(m: 37, n: 29, k: 13, transB: true)
        known.ldb = 13
        // A table that says oneDNN for `known`, whatever a measurement would say.
        GemmChoiceTable.write([GemmChoiceTable.Key(known): .onednn], to: path)
        let table = GemmChoiceTable(path: path)
        #expect(table.library(for: known) == .onednn)
        // A shape it has not seen is measured once and added to the file.
        let fresh = GemmSpec(m: 5, n: 7, k: 3)
        let chosen = table.library(for: fresh)
        let reread = GemmChoiceTable.read(path)
        #expect(reread[GemmChoiceTable.Key(known)] == .onednn)
        #expect(reread[GemmChoiceTable.Key(fresh)] == chosen)
        #expect(reread.count == 2)
        // Another machine's file (a different key line) is ignored, not trusted.
        let other = "/tmp/vitforge-gemm-choice-other-\(getpid()).txt"
        defer { unlink(other) }
        let file = try #require(fopen(other, "w"))
        fputs("vitforge-gemm-choice 1 another machine\nNT 37 29 13 13 13 29 beta0 onednn\n", file)
        fclose(file)
        #expect(GemmChoiceTable.read(other).isEmpty)
    }
}
