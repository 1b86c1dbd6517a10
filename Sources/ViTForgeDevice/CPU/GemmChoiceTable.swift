import CBLAS
import Synchronization
import ViTForgeSupport
#if canImport(Glibc)
import Glibc
#endif

/// `VITFORGE_GEMM=auto`: the faster library for each product shape, measured the first time the shape is seen on
/// this machine and kept in a file next to the OpenCL program cache (`KernelBinaryStore`'s folder), named after a
/// hash of the machine key (CPU model, OpenBLAS's core, oneDNN's version). Later runs read the choice instead of
/// timing again, so on one machine a shape always goes to the same library and results do not depend on the load
/// of the moment: a run resumed from a checkpoint on the same machine reads the same file. Deleting the file (or
/// another machine) measures afresh — the one way results can change, which is why `auto` is not the default.
///
/// The shape of a product is the shape one library call gets: a product the backend splits over its workers is
/// keyed (and timed) by a worker's block, not the whole product.
///
/// File: a first line `vitforge-gemm-choice 2 <machine key>`, then one line per shape:
/// `NT m n k lda ldb ldc beta0|beta1 openblas|onednn`. (Version 1 files were timed by the whole product and the
/// wall clock, see `measure`; they are measured afresh.)
final class GemmChoiceTable: @unchecked Sendable {
    static let shared = GemmChoiceTable(path: GemmChoiceTable.defaultPath())
    static let header = "vitforge-gemm-choice 2"

    let path: String?
    private let lock = ProcessLock()
    /// Only touched under `lock`. `choices`: measured on this machine or read from its file; `adopted`: from a
    /// resumed checkpoint, which wins over `choices` and is never written to the file.
    private var choices: [Key: GemmLibrary] = [:]
    private var adopted: [Key: GemmLibrary] = [:]
    /// Which table a thread's copy belongs to (`ThreadChoices`), and how often `adopt` has changed choices made:
    /// a thread's copy from before an adoption is dropped.
    private let identity = GemmChoiceTable.tables.add(1, ordering: .relaxed).newValue
    private let generation = Atomic<Int>(0)
    private static let tables = Atomic<Int>(0)

    struct Key: Hashable {
        var transA, transB: Bool
        var m, n, k, lda, ldb, ldc: Int
        var accumulates: Bool

        init(_ spec: GemmSpec) {
            (transA, transB, m, n, k) = (spec.transA, spec.transB, spec.m, spec.n, spec.k)
            (lda, ldb, ldc, accumulates) = (spec.lda, spec.ldb, spec.ldc, spec.beta != 0)
        }

        var line: String {
            "\(transA ? "T" : "N")\(transB ? "T" : "N") \(m) \(n) \(k) \(lda) \(ldb) \(ldc) beta\(accumulates ? 1 : 0)"
        }
    }

    init(path: String?) {
        self.path = path
        if let path { choices = Self.read(path) }
    }

    static var machineKey: String {
        let core = openblas_get_corename().map { String(cString: $0) } ?? "?"
        return "\(cpuModel()) | OpenBLAS \(core) | oneDNN \(GemmLibrary.oneDNNVersion ?? "missing")"
    }

    static func defaultPath() -> String? {
        guard let directory = KernelBinaryStore()?.directory else { return nil }
        var hasher = FNV1a64()
        hasher.combine(machineKey)
        return directory + "/gemm-choice-" + String(hasher.value, radix: 16) + ".txt"
    }

    /// The library for `spec`: from the table, else measured now (on scratch operands of the same layout) and
    /// added to the table and its file. After a thread's first lookup of a shape it reads its own copy of the
    /// choice, without the lock (the fused attention looks up every (image, head)'s products).
    func library(for spec: GemmSpec) -> GemmLibrary {
        let key = Key(spec)
        let mine = ThreadChoices.current(table: identity, generation: generation.load(ordering: .acquiring))
        if let known = mine.choices[key] { return known }
        let chosen = lock.withLock {
            if let known = adopted[key] ?? choices[key] { return known }
            let chosen = Self.measure(spec)
            choices[key] = chosen
            if let path { Self.write(choices, to: path) }
            return chosen
        }
        mine.choices[key] = chosen
        return chosen
    }

    /// How much faster oneDNN must be to be chosen: its time at most this share of OpenBLAS's. Near-ties stay
    /// with OpenBLAS (whose results match earlier releases). 5%: the attention products, where
    /// oneDNN is 5–15% faster in these timings, went to OpenBLAS at 10% (Benchmarks/README.md, "GEMM libraries").
    static let margin = 0.95

    /// Both libraries timed alternately (5 rounds after a warm-up, the order swapping each round); the fastest
    /// round of each counts. A round calls the product on several copies of its operands in turn (≥ 8 MiB in
    /// all, so that they come from L2 or beyond as in a model, where each product reads what another op wrote,
    /// not from L1), over enough calls to last ~50 µs (the clock's resolution and a call's fixed cost do not
    /// decide small shapes). The clock is the thread's CPU time: on a shared machine a round the thread spent
    /// preempted does not count against the library it was timing.
    static func measure(_ spec: GemmSpec) -> GemmLibrary {
        var spec = spec
        (spec.offsetA, spec.offsetB, spec.offsetC) = (0, 0, 0)
        let sizes = (a: max(1, (spec.transA ? spec.k : spec.m) * spec.lda),
                     b: max(1, (spec.transB ? spec.n : spec.k) * spec.ldb), c: max(1, spec.m * spec.ldc))
        let copies = min(64, (8 << 20) / (4 * (sizes.a + sizes.b + sizes.c)) + 1)
        let a = scratch(sizes.a * copies), b = scratch(sizes.b * copies), c = scratch(sizes.c * copies)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        func seconds(_ library: GemmLibrary, calls: Int) -> Double {
            let start = threadSeconds()
            for call in 0 ..< calls {
                let copy = call % copies
                library.run(spec, a.baseAddress! + copy * sizes.a, b.baseAddress! + copy * sizes.b,
                            c.baseAddress! + copy * sizes.c)
            }
            return (threadSeconds() - start) / Double(calls)
        }
        let calls = max(1, min(1000, Int(50e-6 / max(seconds(.openblas, calls: 1), 1e-9))))
        var best = [GemmLibrary: Double]()
        for round in 0 ..< 6 {
            let order = round % 2 == 0 ? GemmLibrary.allCases : GemmLibrary.allCases.reversed()
            for library in order {
                let time = seconds(library, calls: calls)
                if round > 0 { best[library] = min(best[library] ?? .infinity, time) }
            }
        }
        return best[.onednn]! <= margin * best[.openblas]! ? .onednn : .openblas
    }

    private static func scratch(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        for i in buffer.indices { buffer[i] = Float(i % 7) * 0.25 - 0.75 }
        return buffer
    }

    static func read(_ path: String) -> [Key: GemmLibrary] {
        guard let text = readText(path) else { return [:] }
        var lines = text.split(separator: "\n")
        guard let first = lines.first, first == "\(header) \(machineKey)" else { return [:] }
        lines.removeFirst()
        var table = [Key: GemmLibrary]()
        for case let (key, library)? in lines.map(choice) { table[key] = library }  // a damaged line: measured again
        return table
    }

    /// One line of the file (`NT m n k lda ldb ldc beta0|beta1 openblas|onednn`); nil when damaged.
    static func choice(_ line: Substring) -> (Key, GemmLibrary)? {
        let fields = line.split(separator: " ")
        guard fields.count == 9, fields[0].count == 2, let library = GemmLibrary(rawValue: String(fields[8])),
              let numbers = Optional(fields[1 ... 6].compactMap { Int($0) }), numbers.count == 6,
              fields[7] == "beta0" || fields[7] == "beta1"
        else { return nil }
        var spec = GemmSpec(m: numbers[0], n: numbers[1], k: numbers[2], transA: fields[0].first == "T",
                            transB: fields[0].last == "T", beta: fields[7] == "beta1" ? 1 : 0)
        (spec.lda, spec.ldb, spec.ldc) = (numbers[3], numbers[4], numbers[5])
        return (Key(spec), library)
    }

    /// The choices made so far, as the file's lines, sorted: what a checkpoint written under `auto` records.
    var lines: [String] {
        lock.withLock { Self.lines(choices.merging(adopted) { $1 }) }
    }

    static func lines(_ table: [Key: GemmLibrary]) -> [String] {
        table.map { "\($0.key.line) \($0.value.rawValue)" }.sorted()
    }

    /// Takes a checkpoint's choices over the table's for the same shapes (in memory only: the file keeps what
    /// this machine measured), so that a run resumed elsewhere multiplies as it did before. Returns how many
    /// lines were damaged and skipped (those shapes are measured here as usual).
    @discardableResult
    func adopt(_ lines: [String]) -> Int {
        let parsed = lines.map { Self.choice(Substring($0)) }
        lock.withLock {
            for case let (key, library)? in parsed { adopted[key] = library }
            generation.add(1, ordering: .releasing)  // every thread's copy goes: an adopted choice wins
        }
        return parsed.filter { $0 == nil }.count
    }

    /// The whole table, written to a temporary file and renamed (a concurrent reader sees the old or the new file).
    /// Failures are silent: the table in memory still holds, and the next run measures again.
    static func write(_ table: [Key: GemmLibrary], to path: String) {
        guard let slash = path.lastIndex(of: "/"), KernelBinaryStore.makeDirectories(String(path[..<slash])) else {
            return
        }
        var text = "\(header) \(machineKey)\n"
        for line in lines(table) { text += line + "\n" }
        let temporary = path + ".tmp.\(getpid())"
        guard let file = fopen(temporary, "w") else { return }
        let written = fputs(text, file) >= 0
        if fclose(file) == 0, written, rename(temporary, path) == 0 { return }
        unlink(temporary)
    }

    private static func readText(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes += chunk[0 ..< count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func cpuModel() -> String {
        guard let text = readText("/proc/cpuinfo"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":")
        else { return "unknown CPU" }
        return line[line.index(after: colon)...].trimmingCharacters(in: " \t")
    }

    /// The calling thread's CPU time (both libraries run single-threaded on the caller).
    private static func threadSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }
}

private extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var text = self
        while let first = text.first, set.contains(first) { text.removeFirst() }
        while let last = text.last, set.contains(last) { text.removeLast() }
        return String(text)
    }
}

/// A thread's copy of the choices it has looked up, per table (`GemmChoiceTable.library(for:)`): read without a
/// lock, filled from the table under its lock on a miss, dropped when the table's generation moves.
private final class ThreadChoices {
    var generation: Int
    var choices: [GemmChoiceTable.Key: GemmLibrary] = [:]

    init(generation: Int) { self.generation = generation }

    /// The calling thread's copies, by table identity (released with the thread).
    private final class Copies { var tables: [Int: ThreadChoices] = [:] }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { copies in
            if let copies { Unmanaged<Copies>.fromOpaque(copies).release() }
        }
        return key
    }()

    static func current(table: Int, generation: Int) -> ThreadChoices {
        let copies: Copies
        if let raw = pthread_getspecific(key) {
            copies = Unmanaged<Copies>.fromOpaque(raw).takeUnretainedValue()
        } else {
            copies = Copies()
            pthread_setspecific(key, Unmanaged.passRetained(copies).toOpaque())
        }
        if let mine = copies.tables[table], mine.generation == generation { return mine }
        let fresh = ThreadChoices(generation: generation)
        copies.tables[table] = fresh
        return fresh
    }
}
