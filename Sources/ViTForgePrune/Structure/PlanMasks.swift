import ViTForgeDevice
import ViTForgeFormats
import ViTForgeModel
import ViTForgeSupport

extension KeepPlan {
    /// The 0/1 channel masks under which the full model computes what `Surgery.prune(weights, plan: self)`
    /// computes without compensation: a method that trains with channels switched off before it cuts (CPD) uses
    /// them, and the tests use them to check the surgery against the masked product model. The residual mask is nil
    /// when every residual channel is kept.
    public func channelMasks(of config: ViTConfig, backend: Backend) throws
        -> (blocks: [BlockMasks], residual: ChannelMask?) {
        _ = try prunedConfig(of: config)
        let blocks = try zip(self.blocks, config.blocks).map { keep, block -> BlockMasks in
            let kept = Dictionary(uniqueKeysWithValues: keep.heads.map { ($0.head, $0) })
            func flags(_ count: Int, _ isKept: (Int) -> Bool) -> [Float] { (0 ..< count).map { isKept($0) ? 1 : 0 } }
            let qkDims = (0 ..< block.heads).flatMap { h in
                flags(block.qkDims[h]) { kept[h]?.qkDims.contains($0) ?? false }
            }
            let vDims = (0 ..< block.heads).flatMap { h in
                flags(block.vDims[h]) { kept[h]?.vDims.contains($0) ?? false }
            }
            let columns = QKVLayout(block).qkvColumnMultipliers(heads: flags(block.heads) { kept[$0] != nil },
                                                                qkDims: qkDims, vDims: vDims)
            let hidden = Set(keep.mlpHidden)
            return BlockMasks(qkv: ChannelMask(values: try backend.makeBuffer(columns)),
                              mlpHidden: ChannelMask(values: try backend.makeBuffer(
                                  flags(block.mlpHidden) { hidden.contains($0) })))
        }
        guard residual.count < config.residualWidth else { return (blocks, nil) }
        let kept = Set(residual)
        let residualMask = ChannelMask(values: try backend.makeBuffer(
            (0 ..< config.residualWidth).map { kept.contains($0) ? Float(1) : 0 }))
        return (blocks, residualMask)
    }
}
