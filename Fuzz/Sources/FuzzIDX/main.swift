import Foundation
import FuzzDriver
import ViTForgeData

// One input = one IDX file (plain or gzip: the reader goes through gzread), read as images and as labels. IDXFile
// reads from a path, so the input is written to a per-process file first.
let inputPath = scratchFile("idx")

runFuzzer { start, count in
    writeInput(start, count, to: inputPath)
    _ = try? IDXFile(path: inputPath, magic: IDXFile.imagesMagic, kind: "images")
    _ = try? IDXFile(path: inputPath, magic: IDXFile.labelsMagic, kind: "labels")
    return 0
}
