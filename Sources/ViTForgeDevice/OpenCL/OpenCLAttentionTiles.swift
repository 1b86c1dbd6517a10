#if canImport(Glibc)
import Glibc
#endif

/// The tile shape of the tiled attention kernels (`Kernels/attention.cl`'s `ATT_*` defines), fixed when the program
/// is built. The standard shape builds with no extra options, so its program (and its on-disk cache entry) is the
/// one every backend has always built; any other shape adds `-D` options, which the program cache keys on, so
/// several shapes can live side by side in one process (a GPU benchmark times them in one run).
public struct OpenCLAttentionTiles: Hashable, Sendable, CustomStringConvertible {
    /// Query rows (forward, dQ) or key rows (dK/dV) per work-group (`ATT_ROWS`).
    public let rows: Int
    /// Work-items per row, each holding every `lanes`-th dimension (`ATT_LANES`); rows × lanes = work-group size.
    public let lanes: Int
    /// Rows of the other side staged in local memory per step (`ATT_TILE`).
    public let tile: Int
    /// The widest head the tiles hold (`ATT_MAXD`); wider heads take the row kernels.
    public let maxWidth: Int

    /// What attention.cl defines when no option is given.
    public static let standard = try! OpenCLAttentionTiles(rows: 16, lanes: 4, tile: 16, maxWidth: 128)

    /// Local memory the OpenCL 1.2 minimum guarantees (and NVIDIA's OpenCL gives a work-group): 48 KiB on current
    /// GPUs, but only 32 KiB is promised, so a shape that needs more is refused here rather than failing to build.
    static let localMemoryLimit = 48 * 1024

    public init(rows: Int, lanes: Int, tile: Int, maxWidth: Int) throws {
        self.rows = rows
        self.lanes = lanes
        self.tile = tile
        self.maxWidth = maxWidth
        guard rows >= 1, lanes >= 1, tile >= 1, maxWidth >= 1 else {
            throw BackendError.invalidArgument("attention tiles \(self): every value must be at least 1")
        }
        guard maxWidth % lanes == 0 else {
            throw BackendError.invalidArgument("attention tiles \(self): the width must be a multiple of the lanes")
        }
        guard groupSize <= 1024 else {
            throw BackendError.invalidArgument("attention tiles \(self): rows × lanes = \(groupSize) work-items, "
                                               + "more than any GPU's work-group (1024)")
        }
        guard localMemoryBytes <= Self.localMemoryLimit else {
            throw BackendError.invalidArgument("attention tiles \(self): \(localMemoryBytes) bytes of local memory, "
                                               + "more than \(Self.localMemoryLimit)")
        }
    }

    /// Parses `ROWSxLANESxTILExWIDTH`, e.g. `16x4x16x128` (the standard shape).
    public init(parsing text: String) throws {
        let values = text.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard values.count == 4, let rows = values[0], let lanes = values[1], let tile = values[2],
              let width = values[3]
        else {
            throw BackendError.invalidArgument(
                "attention tiles '\(text)': expected ROWSxLANESxTILExWIDTH, e.g. \(Self.standard)")
        }
        try self.init(rows: rows, lanes: lanes, tile: tile, maxWidth: width)
    }

    /// `VITFORGE_OPENCL_ATTENTION_TILES` when set (benchmarks of tile shapes), else the standard shape.
    public static func fromEnvironment() throws -> OpenCLAttentionTiles {
        guard let value = getenv("VITFORGE_OPENCL_ATTENTION_TILES"), value.pointee != 0 else { return standard }
        do { return try OpenCLAttentionTiles(parsing: String(cString: value)) } catch let error as BackendError {
            throw BackendError.invalidArgument("VITFORGE_OPENCL_ATTENTION_TILES: \(error)")
        }
    }

    public var description: String { "\(rows)x\(lanes)x\(tile)x\(maxWidth)" }

    /// The tiled kernels' work-group size (their `reqd_work_group_size`).
    public var groupSize: Int { rows * lanes }

    /// The largest kernel's (dK/dV's) local arrays: k, v tiles of `rows` and q, dO tiles of `tile` padded rows,
    /// p and dS of rows × (tile + 1), and the tile's logSumExp and D.
    var localMemoryBytes: Int {
        4 * ((2 * rows + 2 * tile) * (maxWidth + 1) + 2 * rows * (tile + 1) + 2 * tile)
    }

    /// The build options that select this shape: none for the standard one (its program stays the same).
    var buildOptions: String {
        self == Self.standard ? "" : " -DATT_ROWS=\(rows) -DATT_LANES=\(lanes) -DATT_TILE=\(tile) -DATT_MAXD=\(maxWidth)"
    }
}
