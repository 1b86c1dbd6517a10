import ViTForgeRandom

/// Seeded k-means (Lloyd's iterations after k-means++ seeding, Arthur & Vassilvitskii 2007) on a few hundred or
/// thousand points: Vulcan clusters each MLP's fc1 rows. Everything follows from the seed: the same points and seed
/// give the same clusters on every machine (float64, fixed iteration order).
public enum KMeans {
    /// The cluster of each of `points` (row-major [count, dimension]), every one of the `k` clusters non-empty
    /// (`k` is capped at the number of points). Stops when no point moves or after `iterations` rounds.
    public static func cluster(_ points: [Double], count: Int, dimension: Int, k requested: Int, seed: UInt64,
                               iterations: Int = 50) -> [Int] {
        let k = min(max(requested, 1), count)
        guard count > 0 else { return [] }
        if k == count { return Array(0 ..< count) }
        func distance(_ i: Int, _ centre: [Double], _ c: Int) -> Double {
            var sum = 0.0
            let p = i * dimension, q = c * dimension
            for j in 0 ..< dimension {
                let d = points[p + j] - centre[q + j]
                sum += d * d
            }
            return sum
        }
        // k-means++: the first centre uniformly, each next one with probability ∝ squared distance to the nearest.
        var random = SplitMix64(seed: seed)
        var centres = [Double](repeating: 0, count: k * dimension)
        var nearest = [Double](repeating: .infinity, count: count)
        var chosen = Int(random.next() % UInt64(count))
        for c in 0 ..< k {
            for j in 0 ..< dimension { centres[c * dimension + j] = points[chosen * dimension + j] }
            var total = 0.0
            for i in 0 ..< count {
                nearest[i] = min(nearest[i], distance(i, centres, c))
                total += nearest[i]
            }
            guard c + 1 < k else { break }
            var target = random.unit() * total
            chosen = count - 1
            for i in 0 ..< count {
                target -= nearest[i]
                if target < 0 && nearest[i] > 0 { chosen = i; break }
            }
        }
        var assignment = [Int](repeating: -1, count: count)
        for _ in 0 ..< iterations {
            var moved = false
            for i in 0 ..< count {
                var best = 0, bestDistance = Double.infinity
                for c in 0 ..< k {
                    let d = distance(i, centres, c)
                    if d < bestDistance { (best, bestDistance) = (c, d) }
                }
                if assignment[i] != best { assignment[i] = best; moved = true }
            }
            // An emptied cluster takes the point farthest from its own centre (deterministic), so k stays k.
            var sizes = [Int](repeating: 0, count: k)
            for c in assignment { sizes[c] += 1 }
            for c in 0 ..< k where sizes[c] == 0 {
                var farthest = -1, farthestDistance = -1.0
                for i in 0 ..< count where sizes[assignment[i]] > 1 {
                    let d = distance(i, centres, assignment[i])
                    if d > farthestDistance { (farthest, farthestDistance) = (i, d) }
                }
                guard farthest >= 0 else { break }
                sizes[assignment[farthest]] -= 1
                assignment[farthest] = c
                sizes[c] = 1
                moved = true
            }
            centres = [Double](repeating: 0, count: k * dimension)
            for i in 0 ..< count {
                for j in 0 ..< dimension { centres[assignment[i] * dimension + j] += points[i * dimension + j] }
            }
            for c in 0 ..< k where sizes[c] > 0 {
                for j in 0 ..< dimension { centres[c * dimension + j] /= Double(sizes[c]) }
            }
            if !moved { break }
        }
        return assignment
    }
}
