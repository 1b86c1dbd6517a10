import CImageDecode
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What to do with an image file that does not decode.
public enum CorruptImagePolicy: String, CaseIterable, Sendable {
    /// Leave it out, with a warning line naming the file.
    case skip
    /// Stop loading with an error naming the file.
    case fail
}

/// torchvision's ImageFolder layout: one sub-folder per class, class indices in sorted folder-name order, the
/// images anywhere below a class folder. PNG and JPEG files (by extension, case-insensitive) are read; other files
/// are ignored, as torchvision ignores files without an image extension.
public enum ImageFolder {
    public static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    /// The class folders' names, sorted by Unicode code points as Python's `sorted` (torchvision's `find_classes`).
    public static func classNames(in folder: String) throws -> [String] {
        let names = try directoryEntries(folder).filter { isDirectory(join(folder, $0)) }
        guard !names.isEmpty else {
            throw DataFileError(file: folder, .invalidRequest("no class sub-folders (an ImageFolder has one per class)"))
        }
        return names.sorted(by: codePointOrder)
    }

    /// Decodes every image below `folder`'s class folders. `classNames` fixes the class indices (a validation or
    /// test folder takes the training folder's); nil means this folder's own sorted class folders. A class folder
    /// missing from `folder` contributes no images; a folder not in `classNames` is an error (its images would have
    /// no label). Decoding runs on all cores; labels, order and warnings do not depend on the timing.
    public static func load(_ folder: String, classNames given: [String]? = nil, onCorrupt: CorruptImagePolicy,
                            warn: (String) -> Void) throws -> ImageStore {
        let found = try classNames(in: folder)
        let classNames = given ?? found
        if let stray = found.first(where: { !classNames.contains($0) }) {
            throw DataFileError(file: join(folder, stray), .invalidRequest(
                "class folder not among the training classes (\(classNames.joined(separator: ", ")))"))
        }
        var files: [(path: String, label: Int32)] = []
        for (label, name) in classNames.enumerated() where found.contains(name) {
            files += try imageFiles(below: join(folder, name)).map { ($0, Int32(label)) }
        }
        guard !files.isEmpty else {
            throw DataFileError(file: folder, .invalidRequest("no PNG or JPEG files in the class folders"))
        }

        // [files.count]: each file's decoded image or its error, filled concurrently, read in file order.
        let results = UnsafeMutableBufferPointer<Result<DecodedImage, DataFileError>?>.allocate(capacity: files.count)
        results.initialize(repeating: nil)
        defer {
            results.deinitialize()
            results.deallocate()
        }
        DispatchQueue.concurrentPerform(iterations: files.count) { index in
            results[index] = Result { try DecodedImage(file: files[index].path) }.mapError { error in
                error as? DataFileError ?? DataFileError(file: files[index].path, .io(String(describing: error)))
            }
        }

        var store = ImageStore(origin: folder, classNames: classNames)
        for (index, file) in files.enumerated() {
            switch results[index] {
            case let .success(image)?:
                image.pixels.withUnsafeBufferPointer {
                    store.append(pixels: $0, shape: image.shape, label: file.label, file: file.path)
                }
            case let .failure(error)?:
                guard onCorrupt == .skip else { throw error }
                warn("warning: \(error) (skipped)")
            case nil:
                throw DataFileError(file: file.path, .io("not decoded"))
            }
        }
        guard store.count > 0 else {
            throw DataFileError(file: folder, .invalidRequest("every image file failed to decode"))
        }
        return store
    }

    /// Every PNG/JPEG file below `folder` (following links, as torchvision's `os.walk(followlinks=True)`), ordered
    /// as torchvision orders them: by folder path, then by name within a folder.
    static func imageFiles(below folder: String) throws -> [String] {
        var found: [(folder: String, name: String)] = []
        var pending = [(folder, 0)]
        while let (current, depth) = pending.popLast() {
            for name in try directoryEntries(current) {
                let path = join(current, name)
                if isDirectory(path) {
                    // A link cycle would otherwise walk forever.
                    guard depth < 32 else { throw DataFileError(file: path, .invalidRequest("folders nested too deep (a link cycle?)")) }
                    pending.append((path, depth + 1))
                } else if let dot = name.lastIndex(of: "."),
                          extensions.contains(name[name.index(after: dot)...].lowercased()) {
                    found.append((current, name))
                }
            }
        }
        found.sort { $0.folder != $1.folder ? codePointOrder($0.folder, $1.folder) : codePointOrder($0.name, $1.name) }
        return found.map { join($0.folder, $0.name) }
    }

    private static func directoryEntries(_ folder: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw DataFileError(file: folder, .io("cannot list the folder"))
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var isFolder: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue
    }

    public static func join(_ folder: String, _ name: String) -> String {
        folder.hasSuffix("/") ? folder + name : folder + "/" + name
    }

    /// Python's string order (by code point), which Swift's `<` (canonical equivalence) does not always match.
    static func codePointOrder(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
    }
}

/// One decoded image file: bytes [height, width, channels], channels 1 or 3.
public struct DecodedImage: Sendable {
    public let shape: ImageStore.Shape
    public let pixels: [UInt8]

    /// Reads and decodes a PNG or JPEG file, recognised by its first bytes (a PNG named .jpg decodes, as with PIL).
    public init(file: String) throws {
        let bytes = try Self.readFile(file)
        var image = vf_image(pixels: nil, width: 0, height: 0, channels: 0)
        var message = [CChar](repeating: 0, count: 320)
        let isPNG = bytes.starts(with: [0x89, 0x50, 0x4E, 0x47])
        let isJPEG = bytes.starts(with: [0xFF, 0xD8])
        guard isPNG || isJPEG else {
            throw DataFileError(file: file, .corruptImage("neither a PNG nor a JPEG signature"))
        }
        let status = bytes.withUnsafeBufferPointer { input in
            message.withUnsafeMutableBufferPointer { text in
                isPNG ? vf_decode_png(input.baseAddress, input.count, &image, text.baseAddress, text.count)
                    : vf_decode_jpeg(input.baseAddress, input.count, &image, text.baseAddress, text.count)
            }
        }
        guard status == 0 else {
            let reason = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw DataFileError(file: file, .corruptImage(reason))
        }
        defer { vf_image_free(&image) }
        shape = ImageStore.Shape(width: Int(image.width), height: Int(image.height), channels: Int(image.channels))
        guard let decoded = image.pixels else { throw DataFileError(file: file, .corruptImage("decoder returned no pixels")) }
        pixels = Array(UnsafeBufferPointer(start: decoded, count: shape.bytes))
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw DataFileError(file: path, .io("cannot open: " + String(cString: strerror(errno)))) }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw DataFileError(file: path, .io("cannot stat: " + String(cString: strerror(errno))))
        }
        let size = Int(status.st_size)
        guard size <= 1 << 30 else { throw DataFileError(file: path, .io("larger than 1 GiB, not an image ViTForge reads")) }
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        while filled < size {
            let got = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + filled, size - filled) }
            if got < 0 {
                if errno == EINTR { continue }
                throw DataFileError(file: path, .io("cannot read: " + String(cString: strerror(errno))))
            }
            if got == 0 { break }
            filled += got
        }
        return filled == size ? bytes : Array(bytes[..<filled])
    }
}
