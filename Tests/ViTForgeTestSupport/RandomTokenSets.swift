import ViTForgeFormats
import ViTForgeTestBasics

/// Random monotone token sets for `config` (`ViTConfig.tokenSets`): each block drops a random part of what the
/// previous one kept (about 30% of it); with `prefixOnlyFrom`, that block and every later one keep only the class (and
/// distillation) token. Under average pooling a block never drops its last patch token (the pooling needs one).
public func randomTokenSets(_ config: ViTConfig, prefixOnlyFrom: Int?, generator: inout SeededGenerator) -> [[Int]] {
    var current = Array(0..<config.tokens)
    return (0..<config.depth).map { block in
        if let start = prefixOnlyFrom, block >= start {
            current = Array(0..<config.prefixTokens)
        } else {
            var next = current.filter { $0 < config.prefixTokens || generator.below(10) >= 3 }
            if config.pooling == .avg && next.count == config.prefixTokens, let last = current.last {
                next.append(last)  // average pooling needs a patch token
            }
            current = next
        }
        return current
    }
}
