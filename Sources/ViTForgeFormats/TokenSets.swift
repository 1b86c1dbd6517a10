/// Static token pruning (ViT-Slim's third dimension, METHODS.md §2.c): per block, the token positions the block
/// runs on. Positions index the full sequence `[cls, (dist), patch 0, patch 1, …]`, ascending; a set is a subset of
/// the previous block's (a token dropped at block l stays dropped deeper), and the class and distillation tokens are
/// always kept. Where a set shrinks, the model gathers the kept rows of the residual stream before the block, so
/// every later GEMM and attention runs on fewer tokens; average pooling averages the patch tokens the last block
/// kept.
///
/// Stored in the config (`ViTConfig.tokenSets`, version 3). A model without token sets writes version 2, so files of
/// models that never had tokens pruned stay byte for byte what they were.
extension ViTConfig {
    /// The config version that introduced `tokenSets`.
    public static let tokenSetsVersion = 3

    /// The version a config is written with: 3 only when it carries token sets.
    var writtenVersion: Int { tokenSets == nil ? Self.currentVersion : Self.tokenSetsVersion }

    /// Token positions block `index` runs on (all of them without token sets).
    public func keptTokens(block index: Int) -> [Int] {
        tokenSets?[index] ?? Array(0..<tokens)
    }

    /// How many tokens block `index` runs on.
    public func tokens(inBlock index: Int) -> Int {
        tokenSets?[index].count ?? tokens
    }

    /// Tokens the head reads: those of the last block.
    public var finalTokens: Int { depth > 0 ? tokens(inBlock: depth - 1) : tokens }

    /// For block `index`, the rows of the previous block's output (or of the embedding, for block 0) it keeps, in
    /// order; nil when it keeps them all (no gather at this boundary).
    public func gatheredRows(block index: Int) -> [Int]? {
        guard let tokenSets else { return nil }
        let previous = index == 0 ? Array(0..<tokens) : tokenSets[index - 1]
        let current = tokenSets[index]
        guard current.count < previous.count else { return nil }
        var rowOf: [Int: Int] = [:]
        for (row, position) in previous.enumerated() { rowOf[position] = row }
        return current.map { rowOf[$0] ?? -1 }
    }

    /// Why `tokenSets` cannot describe this model's token pruning (nil when it can, or when there are none).
    func tokenSetProblem() -> String? {
        guard let tokenSets else { return nil }
        if tokenSets.count != depth { return "tokenSets has \(tokenSets.count) sets for \(depth) blocks" }
        var previous = Set(0..<tokens)
        for (index, set) in tokenSets.enumerated() {
            if zip(set, set.dropFirst()).contains(where: { $0 >= $1 }) {
                return "tokenSets block \(index): positions must be ascending and distinct"
            }
            if let bad = set.first(where: { !previous.contains($0) }) {
                return bad < 0 || bad >= tokens
                    ? "tokenSets block \(index): position \(bad) outside 0..<\(tokens)"
                    : "tokenSets block \(index): position \(bad) was dropped by an earlier block (sets must shrink with depth)"
            }
            if set.prefix(prefixTokens) != Array(0..<prefixTokens)[...] || set.isEmpty {
                return "tokenSets block \(index): the class and distillation tokens (0..<\(prefixTokens)) must be kept"
            }
            previous = Set(set)
        }
        if pooling == .avg && finalTokens <= prefixTokens {
            return "tokenSets: average pooling needs the last block to keep at least one patch token"
        }
        return nil
    }

    /// The per-block token sets of `keep` (per block, per position: kept or not), made monotone in depth as the
    /// paper does: a position kept at block j is kept at every earlier block (OR from the last block back), and the
    /// prefix tokens are always kept. Nil when every block keeps every token.
    public static func monotoneTokenSets(_ keep: [[Bool]], prefixTokens: Int) -> [[Int]]? {
        var kept = keep
        for block in kept.indices {
            for position in 0..<min(prefixTokens, kept[block].count) { kept[block][position] = true }
        }
        for block in kept.indices.dropLast().reversed() {
            for position in kept[block].indices where kept[block + 1][position] { kept[block][position] = true }
        }
        let sets = kept.map { row in row.indices.filter { row[$0] } }
        return zip(sets, keep).allSatisfy({ $0.count == $1.count }) ? nil : sets
    }
}
