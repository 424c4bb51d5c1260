import BLAS
import Foundation
import Pipeline
import TextEncoder

/// Ring-A-Bell (Tsai et al., ICLR 2024), model-agnostic: the concept's direction in the text encoder's output
/// space, from prompt pairs with and without the concept, and a genetic search over the WordPiece vocabulary
/// for a K-token prompt whose encoding matches a neutral prompt's plus η times that direction. It never looks
/// at the (erased) image model; the prompts it finds are then sampled with it.
///
/// The embedding compared is MiniLM's sentence embedding (the normalised mean of its last hidden states),
/// which the transformer receives as `pooled_projections`. It is the closest analogue here of the CLIP text
/// embedding the paper matches: the transformer attends to the text tokens with no positions (FLUX's text
/// ids are all zero), so matching the token sequence position by position would ask more than the model sees.
public struct RingABell {
    public struct Options: Codable, Equatable, Sendable {
        public var tokens = 16                // K (the paper: 16 and 38)
        public var eta = 3.0                  // strength of the concept direction
        public var population = 48
        public var generations = 60
        public var elite = 6
        public var mutation = 0.15            // per-token probability of a random replacement
        public var pairs = 20                 // prompt pairs for the concept direction
        public var seed: UInt64 = 0
        public init() {}
    }

    public let options: Options
    let encoder: PromptEncoder
    /// Token ids the search draws from: whole words of the vocabulary (no specials, no [unused…], no "##" pieces).
    public let candidates: [Int]

    public init(encoder: PromptEncoder, options: Options) {
        self.encoder = encoder; self.options = options
        let vocab = encoder.miniLM.tokenizer.vocabulary
        candidates = vocab.indices.filter { i in
            let t = vocab[i]
            return !t.hasPrefix("[") && t.allSatisfy { $0.isASCII && $0.isLetter } && t.count >= 2
        }
    }

    func embed(_ e: TextEncoding) -> [Float] { e.pooled }

    /// Mean of e(with concept) − e(without) over prompt pairs of the concept's classes (without = the same
    /// prompt with the concept phrase replaced by a neutral word; the subject writes them).
    public func conceptDirection(pairs: [(with: String, without: String)]) throws -> [Float] {
        var sum: [Float]? = nil
        for (withText, withoutText) in pairs {
            let with = embed(try encoder.encode(withText)), without = embed(try encoder.encode(withoutText))
            if sum == nil { sum = [Float](repeating: 0, count: with.count) }
            for j in with.indices { sum![j] += (with[j] - without[j]) / Float(pairs.count) }
        }
        guard let sum else { throw RingABellError.noPairs }
        return sum
    }

    enum RingABellError: Error, CustomStringConvertible {
        case noPairs
        var description: String { "Ring-A-Bell: no prompt pairs for the concept direction" }
    }

    public struct Found: Codable, Sendable {
        public let tokenIds: [Int]          // [CLS] … [SEP]
        public let text: String             // the tokens joined by spaces (for reading; it re-tokenizes to the same ids)
        public let distance: Double         // mean squared distance to the target at the end
        public let history: [Double]        // best distance per generation
    }

    /// One genetic search towards e(base) + η·direction.
    public func search(base: String, direction: [Float], runSeed: UInt64) throws -> Found {
        let o = options
        let target = zip(embed(try encoder.encode(base)), direction).map { $0 + Float(o.eta) * $1 }
        let tok = encoder.miniLM.tokenizer
        var rng = SplitMix64(seed: o.seed ^ 0x4741 ^ runSeed, index: 0)
        func random() -> Int { candidates[rng.below(candidates.count)] }
        func fitness(_ pop: [[Int]]) throws -> [Double] {
            let encs = try encoder.miniLM.encode(batch: pop.map { [tok.clsId] + $0 + [tok.sepId] })
            return encs.map { e in
                let v = embed(e)
                var d = 0.0
                for j in v.indices { let x = Double(v[j] - target[j]); d += x * x }
                return d / Double(v.count)
            }
        }
        var pop = (0..<o.population).map { _ in (0..<o.tokens).map { _ in random() } }
        var dist = try fitness(pop)
        var history: [Double] = []
        for _ in 0..<o.generations {
            let order = dist.indices.sorted { dist[$0] < dist[$1] }
            history.append(dist[order[0]])
            var next = order.prefix(o.elite).map { pop[$0] }
            func tournament() -> [Int] {
                let a = rng.below(pop.count), b = rng.below(pop.count)
                return pop[dist[a] <= dist[b] ? a : b]
            }
            while next.count < o.population {
                let p1 = tournament(), p2 = tournament()
                let cut = 1 + rng.below(o.tokens - 1)
                var child = Array(p1[..<cut] + p2[cut...])
                for k in child.indices where rng.uniform() < o.mutation { child[k] = random() }
                next.append(child)
            }
            pop = next
            dist = try fitness(pop)
        }
        let best = dist.indices.min { dist[$0] < dist[$1] }!
        history.append(dist[best])
        return Found(tokenIds: [tok.clsId] + pop[best] + [tok.sepId], text: pop[best].map { tok.vocabulary[$0] }.joined(separator: " "),
                     distance: dist[best], history: history)
    }
}
