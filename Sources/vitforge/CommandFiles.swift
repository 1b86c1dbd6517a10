import ArgumentParser
import Foundation
import ViTForgeFormats
import ViTForgeModel

/// A command's files as named by its flags, checked before any work (DESIGN.md: inputs are never overwritten).
/// Every command that writes something lists what it reads and what it writes here, so that a bad `--out` fails in
/// the first millisecond with one line, not after an hour of pruning.
struct CommandFiles {
    /// A flag and the path it was given (nil: not given, skipped).
    struct Named {
        var flag: String
        var path: String?

        init(_ flag: String, _ path: String?) {
            self.flag = flag
            self.path = path
        }
    }

    var inputs: [Named]
    var outputs: [Named]

    init(inputs: [Named], outputs: [Named]) {
        self.inputs = inputs
        self.outputs = outputs
    }

    /// Fails with one line when an output is one of the inputs (same file after links and `./`, or a hard link to
    /// it; a model folder counts as the model file it holds), two outputs are the same file, or an output cannot be
    /// written: its folder is missing or read-only, or it names a folder.
    func check() throws {
        let givenOutputs = outputs.compactMap { named in named.path.map { (flag: named.flag, path: $0) } }
        let givenInputs = inputs.compactMap { named in named.path.map { (flag: named.flag, path: $0) } }
        for (index, output) in givenOutputs.enumerated() {
            for input in givenInputs where Self.sameFile(output.path, input.path) {
                throw CommandFileError("\(output.flag) \(output.path) is the same file as \(input.flag) "
                                       + "\(input.path); refusing to overwrite an input (choose another \(output.flag))")
            }
            for input in givenInputs where Self.overwritesFileInside(folder: input.path, output.path) {
                throw CommandFileError("\(output.flag) \(output.path) is inside \(input.flag) \(input.path); "
                                       + "refusing to overwrite an input (choose another \(output.flag))")
            }
            for other in givenOutputs[..<index] where Self.sameFile(output.path, other.path) {
                throw CommandFileError("\(output.flag) \(output.path) and \(other.flag) \(other.path) name the same "
                                       + "file; give each output its own path")
            }
            try Self.checkWritable(flag: output.flag, path: output.path)
        }
    }

    /// Whether `a` and `b` are one file: the same resolved path (links, `.`, `..`), or the same device and inode.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        let resolvedA = resolved(a), resolvedB = resolved(b)
        if resolvedA == resolvedB { return true }
        var statA = stat(), statB = stat()
        guard stat(resolvedA, &statA) == 0, stat(resolvedB, &statB) == 0 else { return false }
        return statA.st_dev == statB.st_dev && statA.st_ino == statB.st_ino
    }

    /// Whether `path` is an existing file inside the input folder `folder` (a data set's file: overwriting it
    /// changes the input as surely as overwriting a model does).
    static func overwritesFileInside(folder: String, _ path: String) -> Bool {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue,
              FileManager.default.fileExists(atPath: path) else { return false }
        return resolved(path).hasPrefix(resolved(folder) + "/")
    }

    /// The absolute path with links resolved; for a file that does not exist yet, its folder's resolved path plus
    /// its name. A model folder (Hugging Face layout) stands for the model file inside it.
    static func resolved(_ path: String) -> String {
        let absolute = URL(fileURLWithPath: ModelPath.file(path)).standardizedFileURL
        let existing = absolute.resolvingSymlinksInPath()
        if FileManager.default.fileExists(atPath: existing.path) { return existing.path }
        let folder = absolute.deletingLastPathComponent().resolvingSymlinksInPath()
        return folder.appendingPathComponent(absolute.lastPathComponent).path
    }

    private static func checkWritable(flag: String, path: String) throws {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            throw CommandFileError("\(flag) \(path) is a folder; give a file path")
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw CommandFileError("\(flag) \(path): folder \(folder) does not exist")
        }
        guard isFolder.boolValue else { throw CommandFileError("\(flag) \(path): \(folder) is not a folder") }
        guard access(folder, W_OK) == 0 else {
            throw CommandFileError("\(flag) \(path): folder \(folder) is not writable")
        }
    }
}

/// A bad output path, as one line naming the flag and the file.
struct CommandFileError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
