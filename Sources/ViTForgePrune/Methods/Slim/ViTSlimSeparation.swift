/// How far apart the search left the mask entries the cut removes and those it keeps (issue 28, part 4): per module
/// type, how many of each, the removed entries' mean and largest value, the kept ones' smallest and mean. Folding
/// computes the soft-masked model with the removed entries at 0, so the removed values are what the cut loses before
/// any fine-tuning. The report lists them with the method's numbers (the histograms hold all values, not which were
/// removed).
extension ViTSlim {
    /// Per module type (`attention masks`, `MLP masks`, `token masks`: patch tokens only), keys
    /// "<type>: removed|kept count|mean|max|min".
    static func separation(_ masks: Masks, kept: RemovedEntryPenalty.KeptSets, tokenSets: [[Int]]?,
                           prefixTokens: Int) -> [String: Double] {
        var groups: [(String, [[Float]], [[Bool]])] = [("attention masks", masks.attention, kept.attention),
                                                       ("MLP masks", masks.mlp, kept.mlp)]
        if let tokens = masks.tokens {
            let keptTokens = tokens.indices.map { b in
                tokens[b].indices.map { position in tokenSets.map { $0[b].contains(position) } ?? true }
            }
            groups.append(("token masks", tokens.map { Array($0.dropFirst(prefixTokens)) },
                           keptTokens.map { Array($0.dropFirst(prefixTokens)) }))
        }
        var metrics: [String: Double] = [:]
        for (name, values, keptSets) in groups {
            let pairs = zip(values.flatMap { $0 }, keptSets.flatMap { $0 })
            let removed = pairs.filter { !$0.1 }.map { Double($0.0) }, keptValues = pairs.filter(\.1).map { Double($0.0) }
            metrics["\(name): removed count"] = Double(removed.count)
            metrics["\(name): kept count"] = Double(keptValues.count)
            if let max = removed.max() {
                metrics["\(name): removed max"] = max
                metrics["\(name): removed mean"] = removed.reduce(0, +) / Double(removed.count)
            }
            if let min = keptValues.min() {
                metrics["\(name): kept min"] = min
                metrics["\(name): kept mean"] = keptValues.reduce(0, +) / Double(keptValues.count)
            }
        }
        return metrics
    }
}
