/// Where a head's q, k and v features sit in block `b`'s fused `attn.qkv` output and in `attn.proj`'s columns.
public struct QKVLayout: Equatable, Sendable {
    public var heads: Int
    public var qkDim: Int
    public var vDim: Int

    public init(_ block: BlockConfig) {
        heads = block.heads
        qkDim = block.qkDim
        vDim = block.vDim
    }

    public func qRow(head: Int, dim: Int) -> Int { head * qkDim + dim }
    public func kRow(head: Int, dim: Int) -> Int { heads * qkDim + head * qkDim + dim }
    public func vRow(head: Int, dim: Int) -> Int { 2 * heads * qkDim + head * vDim + dim }
    /// `attn.proj` column of value dim `dim` of head `head` (heads are merged head-major).
    public func mergedColumn(head: Int, dim: Int) -> Int { head * vDim + dim }
}
