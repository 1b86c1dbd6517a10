import Foundation
import Testing
@testable import ViTForgeFormats
@testable import ViTForgeModel

/// A safetensors file whose 8-byte header length has 0x80 as its low byte starts with the same byte as a pickle;
/// it must still read as safetensors (found when training checkpoints, whose metadata length varies, were refused).
struct HeaderLengthTests {
    @Test("header lengths ending in byte 0x80 are not mistaken for a pickle", arguments: [0x80, 0x180, 0x1280])
    func lowByte0x80(length: Int) throws {
        let json = #"{"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let header = json + String(repeating: " ", count: length - json.utf8.count)
        let bytes = rawSafetensors(header: header, data: [0, 0, 0x80, 0x3F])
        #expect(bytes.first == 0x80)
        let file = try SafetensorsFile(bytes: bytes, path: "padded.safetensors")
        #expect(try file.floats("x") == [1])
    }
}
