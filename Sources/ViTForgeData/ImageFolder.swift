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
/// are left out, as torchvision leaves out files without an image extension, but counted and named once.
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

    /// Lists every image below `folder`'s class folders with its label and its header's shape, decoding nothing:
    /// the store decodes each image when it is used, so memory does not grow with the folder. `classNames` fixes
    /// the class indices (a validation or test folder takes the training folder's); nil means this folder's own
    /// sorted class folders. A class folder missing from `folder` contributes no images; a folder not in
    /// `classNames` is an error (its images would have no label). A file whose header does not read is skipped or
    /// fatal by `log.policy`; one that fails later, while streaming, is handled by `Dataset`. Headers are read on
    /// all cores; labels, order and warnings do not depend on the timing.
    public static func list(_ folder: String, classNames given: [String]? = nil, log: ImageFolderLog) throws -> ImageStore {
        let found = try classNames(in: folder)
        let classNames = given ?? found
        if let stray = found.first(where: { !classNames.contains($0) }) {
            throw DataFileError(file: join(folder, stray), .invalidRequest(
                "class folder not among the training classes (\(classNames.joined(separator: ", ")))"))
        }
        var files: [(path: String, label: Int32)] = []
        var others: [String] = []
        var emptyFolders: [Int] = []
        for (label, name) in classNames.enumerated() where found.contains(name) {
            let listing = try folderFiles(below: join(folder, name))
            if listing.images.isEmpty { emptyFolders.append(label) }
            files += listing.images.map { ($0, Int32(label)) }
            others += listing.others
        }
        log.leftOut(others, in: folder)
        guard !files.isEmpty else {
            throw DataFileError(file: folder, .invalidRequest("no PNG or JPEG files in the class folders"))
        }
        log.addListed(files.count)

        // [files.count]: each file's header or its error, filled concurrently, read in file order.
        let headers = UnsafeMutableBufferPointer<Result<(shape: ImageStore.Shape, isJPEG: Bool), DataFileError>?>
            .allocate(capacity: files.count)
        headers.initialize(repeating: nil)
        defer {
            headers.deinitialize()
            headers.deallocate()
        }
        DispatchQueue.concurrentPerform(iterations: files.count) { index in
            headers[index] = Result { try probe(files[index].path) }.mapError { error in
                error as? DataFileError ?? DataFileError(file: files[index].path, .io(String(describing: error)))
            }
        }
        var kept: (files: [String], shapes: [ImageStore.Shape], isJPEG: [Bool], labels: [Int32]) = ([], [], [], [])
        for (index, file) in files.enumerated() {
            switch headers[index] {
            case let .success(header)?:
                kept.files.append(file.path)
                kept.shapes.append(header.shape)
                kept.isJPEG.append(header.isJPEG)
                kept.labels.append(file.label)
            case let .failure(error)?:
                try log.skip(error)
            case nil:
                throw DataFileError(file: file.path, .io("not read"))
            }
        }
        guard !kept.files.isEmpty else {
            throw DataFileError(file: folder, .invalidRequest("every image file failed to decode"))
        }
        var store = ImageStore(origin: folder, classNames: classNames, files: kept.files, shapes: kept.shapes,
                               isJPEG: kept.isJPEG, labels: kept.labels, log: log)
        let withImages = Set(kept.labels)
        store.emptyClasses = classNames.indices.filter { found.contains(classNames[$0]) && !withImages.contains(Int32($0)) }
        return store
    }

    /// Decodes every image below `folder`'s class folders into memory at full size (the whole-folder decode:
    /// `list`, then `ImageStore.cachingDecoded`). A file that does not decode is skipped with a warning or ends the
    /// load, by `onCorrupt`.
    public static func load(_ folder: String, classNames given: [String]? = nil, onCorrupt: CorruptImagePolicy,
                            warn: @escaping @Sendable (String) -> Void) throws -> ImageStore {
        let log = ImageFolderLog(policy: onCorrupt, warn: warn)
        return try list(folder, classNames: given, log: log).cachingDecoded(scaling: .full)
    }

    /// Single image files (`predict`), listed by their headers like a folder's and decoded on use; every label 0,
    /// one class "?". A file whose header does not read is an error naming it.
    public static func files(_ paths: [String], log: ImageFolderLog) throws -> ImageStore {
        let headers = try paths.map(probe)
        return ImageStore(origin: paths.first ?? "", classNames: ["?"], files: paths, shapes: headers.map(\.shape),
                          isJPEG: headers.map(\.isJPEG), labels: Array(repeating: 0, count: paths.count), log: log)
    }

    /// The shape a file decodes to and whether it is a JPEG, from its header: the first 64 KiB hold it in any
    /// ordinary file; the whole file is read only when they do not.
    static func probe(_ path: String) throws -> (shape: ImageStore.Shape, isJPEG: Bool) {
        var bytes = try DecodedImage.readFile(path, limit: 1 << 16)
        var header = vf_image_header(width: 0, height: 0, channels: 0)
        var message = [CChar](repeating: 0, count: 320)
        for attempt in 0..<2 {
            let status = bytes.withUnsafeBufferPointer { input in
                message.withUnsafeMutableBufferPointer { vf_probe_image(input.baseAddress, input.count, &header, $0.baseAddress, $0.count) }
            }
            if status == 0 {
                return (ImageStore.Shape(width: Int(header.width), height: Int(header.height), channels: Int(header.channels)),
                        bytes.first == 0xFF)
            }
            if status == 2 && attempt == 0 && bytes.count == 1 << 16 {
                bytes = try DecodedImage.readFile(path)
                continue
            }
            let reason = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw DataFileError(file: path, .corruptImage(reason))
        }
        throw DataFileError(file: path, .corruptImage("header not read"))
    }

    /// Every PNG/JPEG file below `folder` (following links, as torchvision's `os.walk(followlinks=True)`), ordered
    /// as torchvision orders them: by folder path, then by name within a folder; and the other files, in the same
    /// order.
    static func folderFiles(below folder: String) throws -> (images: [String], others: [String]) {
        var found: [(folder: String, name: String)] = []
        var others: [(folder: String, name: String)] = []
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
                } else {
                    others.append((current, name))
                }
            }
        }
        func sorted(_ files: [(folder: String, name: String)]) -> [String] {
            files.sorted { $0.folder != $1.folder ? codePointOrder($0.folder, $1.folder) : codePointOrder($0.name, $1.name) }
                .map { join($0.folder, $0.name) }
        }
        return (sorted(found), sorted(others))
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
    /// A JPEG is decoded at 1/`scaleDenominator` of its size (1, 2, 4 or 8: libjpeg's DCT scaling); a PNG always at
    /// full size.
    public init(file: String, scaleDenominator: Int = 1) throws {
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
                    : vf_decode_jpeg_scaled(input.baseAddress, input.count, Int32(scaleDenominator), &image,
                                             text.baseAddress, text.count)
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

    /// The file's bytes, or its first `limit` bytes.
    static func readFile(_ path: String, limit: Int = .max) throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw DataFileError(file: path, .io("cannot open: " + String(cString: strerror(errno)))) }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw DataFileError(file: path, .io("cannot stat: " + String(cString: strerror(errno))))
        }
        let size = min(Int(status.st_size), limit)
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
