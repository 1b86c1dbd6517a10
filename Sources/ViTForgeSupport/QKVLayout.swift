/// Where a head's q, k and v features sit in a block's fused `attn.qkv` output and in `attn.proj`'s columns: q of
/// every head (head-major), then k of every head, then v of every head (timm's reshape to (3, heads, head_dim)
/// when the heads are equal); heads of different widths follow each other at their own offsets.
///
/// Below both the device layer (the fused attention operation reads q, k and v where this layout puts them) and
/// the file formats (`ViTForgeFormats` adds the initialiser from a block's config), which do not import each other.
public struct QKVLayout: Hashable, Sendable {
    public let heads: Int
    /// Each head's q/k width and v width.
    public let qkDims: [Int]
    public let vDims: [Int]
    /// Where each head starts inside the q (and k) part, and inside the v part and `attn.proj`'s columns.
    public let qkOffsets: [Int]
    public let vOffsets: [Int]
    /// Σ q/k widths (the size of the q part) and Σ v widths.
    public let totalQK: Int
    public let totalV: Int

    /// Heads of the given widths (`qkDims.count == vDims.count`), laid out in order.
    public init(qkDims: [Int], vDims: [Int]) {
        precondition(qkDims.count == vDims.count, "QKVLayout: \(qkDims.count) q/k widths, \(vDims.count) v widths")
        heads = qkDims.count
        self.qkDims = qkDims
        self.vDims = vDims
        var qk: [Int] = [], v: [Int] = []
        var qkSum = 0, vSum = 0
        for h in 0 ..< heads {
            qk.append(qkSum)
            v.append(vSum)
            qkSum += qkDims[h]
            vSum += vDims[h]
        }
        qkOffsets = qk
        vOffsets = v
        totalQK = qkSum
        totalV = vSum
    }

    public var qkvFeatures: Int { 2 * totalQK + totalV }
    public func qRow(head: Int, dim: Int) -> Int { qkOffsets[head] + dim }
    public func kRow(head: Int, dim: Int) -> Int { totalQK + qkOffsets[head] + dim }
    public func vRow(head: Int, dim: Int) -> Int { 2 * totalQK + vOffsets[head] + dim }
    /// `attn.proj` column of value dim `dim` of head `head` (heads are merged head-major).
    public func mergedColumn(head: Int, dim: Int) -> Int { vOffsets[head] + dim }
}
