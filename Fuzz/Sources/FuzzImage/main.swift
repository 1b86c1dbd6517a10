import Foundation
import FuzzDriver
import ViTForgeData

// One input = one image file of an ImageFolder data set, decoded as the ImageFolder loader decodes it (PNG or JPEG
// by signature, through libpng/libjpeg and their longjmp error handling in CImageDecode). DecodedImage reads from a
// path, so the input is written to a per-process file first.
let inputPath = scratchFile("image")

runFuzzer { start, count in
    writeInput(start, count, to: inputPath)
    if let image = try? DecodedImage(file: inputPath) {
        precondition(image.pixels.count == image.shape.bytes, "decoded pixel count disagrees with the shape")
    }
    return 0
}
