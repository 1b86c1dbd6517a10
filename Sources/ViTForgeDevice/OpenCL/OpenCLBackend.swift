import COpenCL
import Kernels
import ViTForgeSupport

/// The OpenCL implementation of `Backend`: GEMMs through CLBlast, every other operation through the hand-written
/// kernels of `Kernels/*.cl`, all enqueued in order on the device's one queue.
///
/// Calls from several threads are safe (the test suite runs its cases in parallel): setting a kernel's arguments
/// and enqueueing it happen under `launchLock`, because `cl_kernel` arguments are shared state, and a reduction's
/// launch and read-back under `reductionLock`, because its partial sums live in one scratch buffer. Operations from
/// different threads interleave on the one in-order queue. Several backends on the same device share its context,
/// queue and built program.
public final class OpenCLBackend: Backend {
    public let name: String
    public var kind: BackendKind { .openCL }
    public var capabilities: DeviceCapabilities { device.capabilities }
    public let device: OpenCLDeviceInfo
    /// Which of an operation's kernel variants this backend launches (see `OpenCLKernelShape`).
    public let kernelShape: OpenCLKernelShape
    /// The tile shape the tiled attention kernels were built with (`OpenCLAttentionTiles`).
    public let attentionTiles: OpenCLAttentionTiles

    /// `-cl-fast-relaxed-math` would make the exp-heavy kernels (softmax, losses, GELU) 3–4x faster on PoCL, but it
    /// also lets the compiler reassociate the float64 reductions and assume no NaN/Inf, which breaks the NaN
    /// signalling of bad labels/indices and the −Inf start of the row maxima.
    static let buildOptions = "-cl-std=CL1.2 -cl-mad-enable"
    /// One fixed local size for every kernel but the tiled attention ones: PoCL compiles a kernel again for every
    /// new local size.
    static let localSize = 64
    /// Work-groups of the float64 sum: enough to fill a large GPU, few enough that the host sums the partials in
    /// microseconds.
    static let reductionGroups = 256

    let shared: OpenCLDeviceContext
    var queue: cl_command_queue? { shared.queue }
    /// Where launches record their events when the queue profiles (`OpenCLProfile.swift`).
    var eventLog: OpenCLEventLog? { shared.eventLog }
    let kernels: [KernelName: cl_kernel]
    var localSizes: [KernelName: Int] = [:]
    /// The arguments each kernel was last launched with (under `launchLock`): a launch sets only those that changed,
    /// so a kernel called again on the same buffers (every block, every step) costs no `clSetKernelArg` at all.
    /// Buffer arguments are retained while cached, so a released buffer's handle cannot be reused by a new buffer
    /// and compare equal.
    var boundArguments: [KernelName: [KernelArgument]] = [:]
    /// How many `clSetKernelArg` calls launches have made (a test counter).
    var kernelArgumentsSet = 0
    /// Float64 partial sums of `sum`/`sumOfSquares` (`reductionGroups` doubles), allocated on first use.
    var reductionPartials: OpenCLBuffer?
    let launchLock = ProcessLock()
    let blockingCounter = CallCounter()
    public var blockingCalls: Int { blockingCounter.count }
    let reductionLock = ProcessLock()
    /// The per-tile partial sums of the two-stage column reductions (bias, LayerNorm γ/β, mask gradients, column
    /// statistics; grown as needed), used between an operation's two stages under `columnPartialsLock`.
    var columnPartials: OpenCLBuffer?
    let columnPartialsLock = ProcessLock()
    /// The fused attention's per-head tables (one per block layout met, uploaded once) and its backward's
    /// [items, tokens] D = dO·O scratch, under `attentionLock`.
    var attentionHeadTables: [QKVLayout: OpenCLBuffer] = [:]
    var attentionDelta: OpenCLBuffer?
    let attentionLock = ProcessLock()
    /// Rows each work-item of a column reduction's first stage sums: 12,608 rows (DeiT at batch 64) become 197
    /// tiles, i.e. 197 × cols work-items instead of cols long chains.
    static let columnTileRows = 64

    /// - Parameter kernelSources: the OpenCL C files to build, in order; nil means the `.cl` files of
    ///   `$VITFORGE_KERNEL_DIR` when that is set (kernel development without a rebuild), else the embedded ones.
    /// - Parameter kernelShape: nil chooses by device type (`OpenCLKernelShape.forDevice`); tests force `.gpu` on
    ///   PoCL to check the GPU-shaped kernels without a GPU.
    /// - Parameter attentionTiles: nil means `OpenCLAttentionTiles.fromEnvironment()` (the standard shape unless
    ///   `VITFORGE_OPENCL_ATTENTION_TILES` is set).
    public init(device: OpenCLDeviceInfo, kernelSources: [(name: String, source: String)]? = nil,
                kernelShape: OpenCLKernelShape? = nil, attentionTiles: OpenCLAttentionTiles? = nil) throws {
        self.device = device
        let shape = try kernelShape ?? OpenCLKernelShape.forDevice(device)
        self.kernelShape = shape
        let tiles = try attentionTiles ?? OpenCLAttentionTiles.fromEnvironment()
        self.attentionTiles = tiles
        let shapeNote = shape == OpenCLKernelShape.natural(for: device) ? "" : ", \(shape.rawValue)-shaped kernels"
        let tilesNote = tiles == .standard ? "" : ", attention tiles \(tiles)"
        name = "\(device.spec) \(device.name) (\(device.platformName)\(shapeNote)\(tilesNote))"
        shared = try OpenCLDeviceContext.shared(for: device)
        let sources = try kernelSources ?? Self.kernelDirectorySources() ?? KernelSources.files
        let program = try shared.program(sources: sources, options: Self.buildOptions + tiles.buildOptions)
        kernels = try Self.createKernels(program, device: device)
    }

    deinit {
        for kernel in kernels.values { clReleaseKernel(kernel) }
        for arguments in boundArguments.values { Self.releaseBuffers(arguments) }
    }

    static func releaseBuffers(_ arguments: [KernelArgument]) {
        for case let .buffer(memory) in arguments { clReleaseMemObject(memory) }
    }

    func requireFloat64(_ operation: String) throws {
        guard supports(.float64) else {
            throw BackendError.unsupported(
                "\(operation) needs cl_khr_fp64 (float64 accumulation), which \(device.name) does not provide")
        }
    }
}
