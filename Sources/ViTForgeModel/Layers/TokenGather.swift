import ViTForgeDevice
import ViTForgeFormats

/// Physical token pruning for one batch size: at each block boundary where the model's token set shrinks
/// (`ViTConfig.gatheredRows`), the kept rows of the residual stream are gathered into a smaller buffer the block
/// then runs on; backward scatters the block input's gradient back into the rows it came from (the dropped rows get
/// no gradient: they influence nothing later). Both are the device's element `gather`/`scatterAdd`, with element
/// indices built once here, so a step does no host work.
final class TokenGatherPlan {
    /// Rows (batch · tokens) each block runs on.
    let blockRows: [Int]
    /// Per block, the element indices into the previous residual step of its gathered input; nil: no gather.
    private let indices: [Buffer?]
    /// The gathered inputs: one per gathering block when activations are kept (backward's LayerNorm reads them),
    /// otherwise one shared buffer, sized for the largest.
    private let inputs: [Int: Buffer]
    private let sharedInput: Buffer?
    let width: Int
    /// Rows of the embedding's output (every token).
    let fullRows: Int

    init(_ backend: Backend, config c: ViTConfig, batch: Int, keepsActivations: Bool) throws {
        width = c.residualWidth
        fullRows = batch * c.tokens
        blockRows = (0..<c.depth).map { batch * c.tokens(inBlock: $0) }
        var indices: [Buffer?] = []
        var inputs: [Int: Buffer] = [:]
        var largest = 0
        for block in 0..<c.depth {
            guard let rows = c.gatheredRows(block: block) else {
                indices.append(nil)
                continue
            }
            let previousTokens = block == 0 ? c.tokens : c.tokens(inBlock: block - 1)
            var elements = [Int32](repeating: 0, count: batch * rows.count * width)
            var i = 0
            for image in 0..<batch {
                for row in rows {
                    let start = (image * previousTokens + row) * width
                    for column in 0..<width {
                        elements[i] = Int32(start + column)
                        i += 1
                    }
                }
            }
            indices.append(try backend.makeBuffer(elements))
            largest = max(largest, elements.count)
            if keepsActivations { inputs[block] = try backend.allocate(elements.count) }
        }
        self.indices = indices
        self.inputs = inputs
        sharedInput = !keepsActivations && largest > 0 ? try backend.allocate(largest) : nil
    }

    /// Whether block `index` gathers its input.
    func gathers(_ index: Int) -> Bool { indices[index] != nil }

    /// The buffer block `index` reads as its input: the gathered rows, or `residual` itself when nothing is dropped.
    func input(_ index: Int, residual: Buffer) -> Buffer {
        guard indices[index] != nil else { return residual }
        return inputs[index] ?? sharedInput ?? residual
    }

    /// Gathers block `index`'s kept rows of `residual` (the previous block's output) into `input(index, …)`.
    func forward(_ backend: Backend, block index: Int, residual: Buffer) throws {
        guard let map = indices[index] else { return }
        try backend.gather(src: residual, indices: map, dst: input(index, residual: residual),
                           count: blockRows[index] * width)
    }

    /// d(previous block's output) from d(block `index`'s input): zero, then scatter-add each kept row back.
    func backward(_ backend: Backend, block index: Int, dInput: Buffer, dResidual: Buffer) throws {
        guard let map = indices[index] else { return }
        let previousRows = index == 0 ? fullRows : blockRows[index - 1]
        try backend.fill(dResidual, value: 0, offset: 0, count: previousRows * width)
        try backend.scatterAdd(src: dInput, indices: map, dst: dResidual, count: blockRows[index] * width)
    }
}
