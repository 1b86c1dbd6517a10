/// FNV-1a, 64 bits: a stable hash (Swift's `Hasher` is seeded per process, useless for file names); also what a
/// prune report records of the latency table it used.
public struct FNV1a64 {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func combine<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        for byte in bytes {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
    }

    public mutating func combine(_ text: String) { combine(text.utf8) }
}
