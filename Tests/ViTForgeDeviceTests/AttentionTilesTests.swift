import Testing
@testable import ViTForgeDevice
import ViTForgeOpTable

/// The tiled attention's tile shape as build options (`OpenCLAttentionTiles`): what is accepted, that the standard
/// shape adds no option (its program and cache entry stay the ones every backend built before), and that other
/// shapes — more rows than the tile, fewer, a work-group other than 64 — compute the op table's attention rows.
@Suite(.serialized)
struct AttentionTilesTests {
    @Test func parsingAndLimits() throws {
        #expect(try OpenCLAttentionTiles(parsing: "16x4x16x128") == OpenCLAttentionTiles.standard)
        #expect(OpenCLAttentionTiles.standard.buildOptions.isEmpty)
        let other = try OpenCLAttentionTiles(parsing: "8x4x32x64")
        #expect(other.groupSize == 32)
        #expect(other.buildOptions == " -DATT_ROWS=8 -DATT_LANES=4 -DATT_TILE=32 -DATT_MAXD=64")
        #expect(other.description == "8x4x32x64")
        for bad in ["16x4x16", "16x4x16x128x1", "0x4x16x64", "16x3x16x64", "64x64x16x128", "32x4x32x128", "axbxcxd"] {
            #expect(throws: BackendError.self, "\(bad) was accepted") { try OpenCLAttentionTiles(parsing: bad) }
        }
    }

    @Test(.enabled(if: OpenCLBackendTests.device != nil, OpenCLBackendTests.noDevice),
          arguments: ["8x4x16x64", "32x4x8x64"])
    func otherShapesMatchTheReference(text: String) throws {
        let device = try #require(OpenCLBackendTests.device)
        let tiles = try OpenCLAttentionTiles(parsing: text)
        let backend = try OpenCLBackend(device: device, kernelShape: .gpu, attentionTiles: tiles)
        #expect(backend.attentionTiles == tiles)
        #expect(backend.name.contains("attention tiles \(text)"))
        // The tiled kernels run at the shape's work-group size (not the other kernels' 64), so heads ≤ 64 wide
        // take them.
        #expect(try backend.launchLocalSize(.attentionForwardTiled) == tiles.groupSize)
        let rows = OpCase.table.filter { $0.name.hasPrefix("attention") }
        #expect(rows.count >= 10)
        for row in rows {
            for check in try row.check(on: backend) {
                #expect(check.passed, """
                    \(row.name), tiles \(text): \(check.output) normalised error \(check.error) > \(check.tolerance)
                    """)
            }
        }
    }
}
