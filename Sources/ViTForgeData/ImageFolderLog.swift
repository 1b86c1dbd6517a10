import Foundation

/// What reading the ImageFolders of one run left out: files that do not decode (each warned about once, when found:
/// while listing, while caching, or while streaming a batch) and files that are not images. Gives the summary line
/// printed at the end of a run ("skipped 3 of 12,408 files; first: …"). Shared by the stores of a run and the views
/// on them; safe to use from the decoding threads.
public final class ImageFolderLog: @unchecked Sendable {
    public let policy: CorruptImagePolicy
    private let warn: @Sendable (String) -> Void
    private let lock = NSLock()
    private var listedFiles = 0
    /// In the order found; a file is recorded once however often it fails.
    private var skipped: [DataFileError] = []
    private var skippedFiles: Set<String> = []

    public init(policy: CorruptImagePolicy, warn: @escaping @Sendable (String) -> Void) {
        self.policy = policy
        self.warn = warn
    }

    /// Image files listed so far (every PNG/JPEG of every folder read).
    public var listed: Int { lock.withLock { listedFiles } }
    public var skippedCount: Int { lock.withLock { skipped.count } }

    func addListed(_ count: Int) { lock.withLock { listedFiles += count } }

    /// Whether `file` was already found undecodable (a streamed batch then takes the next image without trying).
    func hasSkipped(_ file: String) -> Bool { lock.withLock { skippedFiles.contains(file) } }

    /// A file that does not decode: with `.fail`, `error` is thrown; with `.skip` it is warned about (the first
    /// time) and counted.
    func skip(_ error: DataFileError) throws {
        guard policy == .skip else { throw error }
        let isNew = lock.withLock { skippedFiles.insert(error.file).inserted }
        guard isNew else { return }
        lock.withLock { skipped.append(error) }
        warn("warning: \(error) (skipped)")
    }

    /// One line naming the files of a folder that are neither PNG nor JPEG (torchvision ignores them silently).
    func leftOut(_ others: [String], in folder: String) {
        guard let first = others.first else { return }
        let kinds = Set(others.map { name -> String in
            let last = (name as NSString).lastPathComponent
            guard let dot = last.lastIndex(of: "."), dot != last.startIndex else { return "no extension" }
            return String(last[dot...]).lowercased()
        }).sorted()
        warn("note: \(folder): left out \(Self.grouped(others.count)) file\(others.count == 1 ? "" : "s") that "
             + "\(others.count == 1 ? "is" : "are") not PNG or JPEG (\(kinds.joined(separator: ", "))); first: \(first)")
    }

    func note(_ line: String) { warn(line) }

    /// "skipped 3 of 12,408 files; first: <file>: <reason>", or nil when nothing was skipped.
    public var summary: String? {
        lock.withLock {
            guard let first = skipped.first else { return nil }
            return "skipped \(Self.grouped(skipped.count)) of \(Self.grouped(listedFiles)) image files; first: \(first)"
        }
    }

    /// 12408 → "12,408".
    static func grouped(_ value: Int) -> String {
        let digits = String(value)
        var out = ""
        for (position, digit) in digits.enumerated() {
            if position > 0 && (digits.count - position) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }
}
