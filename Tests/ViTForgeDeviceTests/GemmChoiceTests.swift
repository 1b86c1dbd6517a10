import Foundation
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

    /// A table file in /tmp that says oneDNN for `known` (an NT shape), whatever a measurement would say, and the
    /// table read from it.
    static func tableSayingOneDNN(_ name: String) -> (path: String, known: GemmSpec, table: GemmChoiceTable) {
        let path = "/tmp/vitforge-gemm-choice-\(name)-\(getpid()).txt"
        var known = GemmSpec(m: 37, n: 29, k: 13, transB: true)
        known.ldb = 13
        GemmChoiceTable.write([GemmChoiceTable.Key(known): .onednn], to: path)
        return (path, known, GemmChoiceTable(path: path))
    }

    /// A choice file in /tmp with `header` as its key line and one line choosing oneDNN for a 37×29·13 NT shape.
    static func choiceFile(_ name: String, header: String) throws -> String {
        let path = "/tmp/vitforge-gemm-choice-\(name)-\(getpid()).txt"
        let file = try #require(fopen(path, "w"))
        fputs("\(header)\nNT 37 29 13 13 13 29 beta0 onednn\n", file)
        fclose(file)
        return path
    }

    @Test("a choice read from the file is used as it is, and a measured one is written back")
    func fileRoundTrip() throws {
        let (path, known, table) = Self.tableSayingOneDNN("test")
        defer { unlink(path) }
        #expect(table.library(for: known) == .onednn)
        // A shape it has not seen is measured once and added to the file.
        let fresh = GemmSpec(m: 5, n: 7, k: 3)
        let chosen = table.library(for: fresh)
        let reread = GemmChoiceTable.read(path)
        #expect(reread[GemmChoiceTable.Key(known)] == .onednn)
        #expect(reread[GemmChoiceTable.Key(fresh)] == chosen)
        #expect(reread.count == 2)
        // Another machine's file (a different key line) is ignored, not trusted.
        let other = try Self.choiceFile("other", header: "vitforge-gemm-choice 1 another machine")
        defer { unlink(other) }
        #expect(GemmChoiceTable.read(other).isEmpty)
        // This machine's file from version 1 (timed by whole products on the wall clock) is measured afresh.
        let older = try Self.choiceFile("v1", header: "vitforge-gemm-choice 1 \(GemmChoiceTable.machineKey)")
        defer { unlink(older) }
        #expect(GemmChoiceTable.read(older).isEmpty)
        #expect(GemmChoiceTable.read(path).count == 2)
    }

    @Test("a checkpoint's choices win over the table's, in memory only; damaged lines are counted and skipped")
    func adoptedChoices() throws {
        let (path, known, table) = Self.tableSayingOneDNN("adopt")
        defer { unlink(path) }
        let key = GemmChoiceTable.Key(known)
        #expect(table.library(for: known) == .onednn)  // now in this thread's copy too, which the adoption drops
        #expect(table.adopt(["\(key.line) openblas", "NT 1 2 three"]) == 1)
        #expect(table.library(for: known) == .openblas)
        #expect(table.lines == ["\(key.line) openblas"])
        #expect(GemmChoiceTable.read(path)[key] == .onednn)
    }

    @Test("auto: a product split over the workers runs on the library chosen for a worker's block, not the whole",
          .enabled(if: GemmLibrary.oneDNNProblem == nil, "oneDNN is not installed"))
    func splitProductUsesTheBlockChoice() throws {
        // 37×29·1500 on 2 workers is split along m; worker 0's block is 18×29·1500 (the shape a library call gets).
        let whole = GemmSpec(m: 37, n: 29, k: 1500)
        let block = CPUBackend.block(whole, worker: 0, of: 2)
        #expect(block.spec.m == 18 && block.spec.n == 29 && block.a == 0 && block.c == 0)
        var second = whole
        second.m = 19
        #expect(CPUBackend.block(whole, worker: 1, of: 2) == (second, 18 * 1500, 0, 18 * 29))
        var generator = SystemRandomNumberGenerator()
        let a = (0 ..< 37 * 1500).map { _ in Float.random(in: -1 ... 1, using: &generator) }
        let b = (0 ..< 1500 * 29).map { _ in Float.random(in: -1 ... 1, using: &generator) }
        func product(_ gemm: GemmSelection) throws -> [Float] {
            let backend = CPUBackend(threads: 2, parallelThreshold: 0, gemm: gemm)
            let c = try backend.makeBuffer([Float](repeating: 0, count: 37 * 29))
            try backend.gemm(whole, a: try backend.makeBuffer(a), b: try backend.makeBuffer(b), c: c)
            return try backend.read(c)
        }
        let openBLAS = try product(.pinned(.openblas)), oneDNN = try product(.pinned(.onednn))
        try #require(openBLAS != oneDNN, "the libraries' sums must differ in their last bits to tell them apart")
        // The shared table (these shapes occur nowhere else): OpenBLAS for the whole product, oneDNN for the block.
        GemmChoiceTable.shared.adopt(["\(GemmChoiceTable.Key(whole).line) openblas",
                                      "\(GemmChoiceTable.Key(block.spec).line) onednn"])
        #expect(try product(.auto) == oneDNN)
    }

    @Test("resuming: the checkpoint's library unless VITFORGE_GEMM pins another (one warning); refused without it")
    func continueFromRecord() throws {
        let backend = CPUBackend(threads: 1, gemm: .pinned(.openblas))
        var warnings: [String] = []
        try backend.continueGemm(GemmRecord(setting: "onednn"), checkpoint: "c.safetensors", pinnedByUser: true,
                                 warn: { warnings.append($0) })
        #expect(backend.gemm == .pinned(.openblas))
        #expect(warnings == ["c.safetensors was written with VITFORGE_GEMM=onednn; continuing with "
                             + "VITFORGE_GEMM=openblas as set, so the result may differ in its last bits from an "
                             + "uninterrupted run"])
        #expect(throws: BackendError.self) {
            try backend.continueGemm(GemmRecord(setting: "mkl"), checkpoint: "c.safetensors", pinnedByUser: false)
        }
        if GemmLibrary.oneDNNProblem == nil {
            var notes: [String] = []
            try backend.continueGemm(GemmRecord(setting: "onednn"), checkpoint: "c.safetensors", pinnedByUser: false,
                                     note: { notes.append($0) })
            #expect(backend.gemm == .pinned(.onednn))
            #expect(notes == ["c.safetensors was written with VITFORGE_GEMM=onednn: continuing on oneDNN"])
        } else {
            #expect(throws: BackendError.self) {
                try backend.continueGemm(GemmRecord(setting: "onednn"), checkpoint: "c.safetensors",
                                         pinnedByUser: false)
            }
        }
    }

    @Test("oneDNN loads where CI installed it (VITFORGE_EXPECT_ONEDNN=1), so the op table runs on it",
          .enabled(if: ProcessInfo.processInfo.environment["VITFORGE_EXPECT_ONEDNN"] == "1"))
    func oneDNNPresentWhenExpected() {
        #expect(GemmLibrary.oneDNNProblem == nil, "\(GemmLibrary.oneDNNProblem ?? "")")
        #expect(TestBackends.all.contains { ($0.backend as? CPUBackend)?.gemm == .pinned(.onednn) })
    }
}
