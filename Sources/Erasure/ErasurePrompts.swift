import Flux
import Foundation
import TextEncoder
import World

/// What a concept prompt is pushed towards: the original model's sample for …
public enum ErasureTarget: Codable, Equatable, Sendable, CustomStringConvertible {
    case null                 // … the empty prompt (the paper's formulation)
    case deconcept            // … the same prompt with the concept phrase replaced by "object" (colours stay)
    case anchor(String)       // … the same prompt with the concept phrase replaced by this phrase

    public static func parse(_ text: String) throws -> ErasureTarget {
        let t = text.trimmingCharacters(in: .whitespaces)
        switch t.lowercased() {
        case "null", "empty": return .null
        case "deconcept": return .deconcept
        case "nearest": throw ErasureError.badArgument("--target nearest names a class only the text encoder can choose: resolve it with ErasureTarget.resolve")
        case "": throw ErasureError.badArgument("--target must be null, deconcept or an anchor phrase, not empty")
        default: return .anchor(t)
        }
    }

    public var description: String {
        switch self {
        case .null: return "null"
        case .deconcept: return "deconcept"
        case .anchor(let a): return "anchor:\(a)"
        }
    }
}

/// One training item: a prompt, the prompt whose original-model sample is its target, and its noise seed.
public struct ErasureItem: Codable, Equatable, Sendable {
    public let prompt: String
    public let targetPrompt: String     // "" = the null prompt
    public let isConcept: Bool
    public let seed: UInt64
    public let classID: Int?            // the world class the prompt names, when known
    public let objColor: Int?
    public let bgColor: Int?
}

/// A concept to erase: the phrases that name it and, when it is one of the world's classes, the class.
public struct ConceptSpec: Codable, Equatable, Sendable {
    public let name: String
    public let phrases: [String]        // lower-case; longest first
    public let classID: Int?

    /// A world class name or any of its synonyms resolves to the class (all its synonyms become phrases);
    /// other text is a free concept whose only phrase is itself plus `synonyms`.
    public static func resolve(_ text: String, synonyms: [String] = []) throws -> ConceptSpec {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !t.isEmpty else { throw ErasureError.badArgument("--concept must not be empty") }
        if let m = CaptionGrammar.mentions(in: t).first, m.phrase == t {
            let c = Vocabulary.classes[m.classID]
            let phrases = Set(c.synonyms.map { $0.text.lowercased() } + synonyms.map { $0.lowercased() })
            return ConceptSpec(name: c.name, phrases: phrases.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 },
                               classID: c.id)
        }
        let phrases = Set([t] + synonyms.map { $0.lowercased() })
        return ConceptSpec(name: t, phrases: phrases.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }, classID: nil)
    }

    /// Whether the text names this concept (whole words, case-insensitive).
    public func isMentioned(in text: String) -> Bool { !ranges(in: text).isEmpty }

    func ranges(in text: String) -> [Range<String.Index>] {
        if let id = classID {
            return CaptionGrammar.mentions(in: text).filter { $0.classID == id }.map(\.range)
        }
        let lower = text.lowercased()
        var out: [Range<String.Index>] = []
        for p in phrases {
            var from = lower.startIndex
            while let r = lower.range(of: p, range: from..<lower.endIndex) {
                let before = r.lowerBound == lower.startIndex ? " " : lower[lower.index(before: r.lowerBound)]
                let after = r.upperBound == lower.endIndex ? " " : lower[r.upperBound]
                if !(before.isLetter || before.isNumber) && !(after.isLetter || after.isNumber),
                   !out.contains(where: { $0.overlaps(r) }) {
                    out.append(r)
                }
                from = r.upperBound
            }
        }
        return out.sorted { $0.lowerBound < $1.lowerBound }
    }

    /// The text with every mention replaced by `phrase`, fixing a preceding "a"/"an".
    public func replacing(in text: String, with phrase: String) -> String {
        var out = "", last = text.startIndex
        for r in ranges(in: text) {
            out += text[last..<r.lowerBound]
            for art in ["an ", "a "] where out.lowercased().hasSuffix(art) {
                let head = out.dropLast(art.count)
                if head.isEmpty || head.last == " " { out = String(head) + CaptionGrammar.article(for: phrase) + " " }
                break
            }
            out += phrase
            last = r.upperBound
        }
        return out + text[last...]
    }
}

/// Training prompts for an erasure run.
public enum ErasurePrompts {
    /// The target prompt of a concept prompt.
    public static func targetPrompt(for prompt: String, concepts: [ConceptSpec], target: ErasureTarget) -> String {
        switch target {
        case .null: return ""
        case .deconcept: return concepts.reduce(prompt) { $1.replacing(in: $0, with: "object") }
        case .anchor(let a): return concepts.reduce(prompt) { $1.replacing(in: $0, with: a) }
        }
    }

    /// World prompts: `conceptCount` captions per concept (training templates and synonyms, colours spread
    /// over the palette) and `neutralCount` captions of the other classes, all a pure function of `seed`.
    /// A free (non-world) concept fills the training templates with its phrases.
    public static func world(concepts: [ConceptSpec], conceptCount: Int, neutralCount: Int, target: ErasureTarget,
                             seed: UInt64) throws -> [ErasureItem] {
        guard !concepts.isEmpty else { throw ErasureError.badArgument("give at least one --concept") }
        guard conceptCount >= 1, neutralCount >= 0 else {
            throw ErasureError.badArgument("--concept-prompts must be ≥ 1 and --neutral-prompts ≥ 0")
        }
        let erased = Set(concepts.compactMap(\.classID))
        var items: [ErasureItem] = []
        var index: UInt64 = 0
        func nextSeed() -> UInt64 { index += 1; return seed &+ 0x5EED_0000 &+ index }
        for (ci, c) in concepts.enumerated() {
            for k in 0..<conceptCount {
                var rng = WorldRNG(seed: seed ^ 0xC0C0, index: UInt64(ci * 100_000 + k))
                let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
                let templates = CaptionGrammar.trainTemplateIDs
                let t = templates[rng.below(templates.count)]
                let text: String
                if let id = c.classID {
                    let syn = Vocabulary.classes[id].trainSynonymIndices
                    text = Caption(classID: id, objColor: pair.object, bgColor: pair.background, template: t,
                                   synonym: syn[rng.below(syn.count)]).text
                } else {
                    let phrase = c.phrases[rng.below(c.phrases.count)]
                    text = CaptionGrammar.render(template: t, noun: phrase, plural: false, objColor: Vocabulary.colors[pair.object].name,
                                                 bgColor: Vocabulary.colors[pair.background].name)
                }
                items.append(ErasureItem(prompt: text, targetPrompt: targetPrompt(for: text, concepts: concepts, target: target),
                                         isConcept: true, seed: nextSeed(), classID: c.classID, objColor: pair.object,
                                         bgColor: pair.background))
            }
        }
        let others = (0..<Vocabulary.classCount).filter { !erased.contains($0) }
        var k = 0
        while items.filter({ !$0.isConcept }).count < neutralCount {
            var rng = WorldRNG(seed: seed ^ 0x4E4E, index: UInt64(k))
            let cls = others[k % others.count]
            k += 1
            let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
            let (ts, ss) = CaptionGrammar.choices(classID: cls, wording: .train)
            let cap = Caption(classID: cls, objColor: pair.object, bgColor: pair.background, template: ts[rng.below(ts.count)],
                              synonym: ss[rng.below(ss.count)])
            if concepts.contains(where: { $0.isMentioned(in: cap.text) }) { continue }
            items.append(ErasureItem(prompt: cap.text, targetPrompt: cap.text, isConcept: false, seed: nextSeed(),
                                     classID: cls, objColor: pair.object, bgColor: pair.background))
        }
        return interleaved(items)
    }

    /// Prompts from files (one per line, blank lines and lines starting with # skipped): every concept prompt
    /// must mention a concept and no neutral prompt may.
    public static func files(conceptFile: String, neutralFile: String?, concepts: [ConceptSpec], target: ErasureTarget,
                             seed: UInt64) throws -> [ErasureItem] {
        func lines(_ path: String) throws -> [String] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ErasureError.io("cannot read prompt file \(path) (expected UTF-8 text, one prompt per line)")
            }
            return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        let cp = try lines(conceptFile)
        guard !cp.isEmpty else { throw ErasureError.badInput("\(conceptFile) has no prompts") }
        var items: [ErasureItem] = []
        var index: UInt64 = 0
        for (i, p) in cp.enumerated() {
            guard concepts.contains(where: { $0.isMentioned(in: p) }) else {
                throw ErasureError.badInput("\(conceptFile) line \(i + 1): \"\(p)\" does not mention the concept (\(concepts.map(\.name).joined(separator: ", ")))")
            }
            index += 1
            items.append(ErasureItem(prompt: p, targetPrompt: targetPrompt(for: p, concepts: concepts, target: target), isConcept: true,
                                     seed: seed &+ 0x5EED_0000 &+ index, classID: concepts.first { $0.isMentioned(in: p) }?.classID,
                                     objColor: nil, bgColor: nil))
        }
        if let nf = neutralFile {
            for (i, p) in try lines(nf).enumerated() {
                if concepts.contains(where: { $0.isMentioned(in: p) }) {
                    throw ErasureError.badInput("\(nf) line \(i + 1): neutral prompt \"\(p)\" mentions the concept")
                }
                index += 1
                items.append(ErasureItem(prompt: p, targetPrompt: p, isConcept: false, seed: seed &+ 0x5EED_0000 &+ index,
                                         classID: CaptionGrammar.mentions(in: p).first?.classID, objColor: nil, bgColor: nil))
            }
        }
        return interleaved(items)
    }

    /// Concept and neutral items spread evenly through the list, concept first: with equal counts they alternate
    /// (as in the authors' data loader); with unequal counts each stretch of the list keeps the overall ratio
    /// (20 concept and 60 neutral: c n n n c n n n …), so every accumulated step sees both terms rather than
    /// ending each epoch on a run of one kind.
    static func interleaved(_ items: [ErasureItem]) -> [ErasureItem] {
        let c = items.filter(\.isConcept), n = items.filter { !$0.isConcept }
        let total = c.count + n.count
        var out: [ErasureItem] = [], ci = 0, ni = 0
        for k in 0..<total {
            // The next concept item is due once k has reached its share of the positions: ci·total ≤ k·c.
            let conceptDue = ci < c.count && (ni == n.count || ci * total <= k * c.count)
            if conceptDue { out.append(c[ci]); ci += 1 } else { out.append(n[ni]); ni += 1 }
        }
        return out
    }
}

extension ErasureTarget {
    /// `--target` as the user gives it: null, deconcept, an anchor phrase, or `nearest`, which the text encoder
    /// resolves to an anchor (one concept only). Returns the nearest class too when it chose one.
    public static func resolve(_ text: String, concepts: [ConceptSpec], encoder: MiniLM) throws
        -> (target: ErasureTarget, nearest: (name: String, similarity: Double)?) {
        guard text.trimmingCharacters(in: .whitespaces).lowercased() == "nearest" else { return (try parse(text), nil) }
        guard concepts.count == 1 else {
            throw ErasureError.badArgument("--target nearest takes one --concept; give several concepts an anchor phrase instead")
        }
        let near = try nearestClass(to: concepts[0], encoder: encoder)
        return (.anchor(near.name), near)
    }

    /// `--target nearest`: the anchor is the world class the concept's name is nearest to in the text encoder
    /// (cosine of the pooled MiniLM embeddings of the class names), its own class excluded — a concept the
    /// model already draws, so the erased prompts move to a nearby mode rather than to an unfamiliar word.
    public static func nearestClass(to concept: ConceptSpec, encoder: MiniLM) throws -> (name: String, similarity: Double) {
        let c = try encoder.encode(concept.name, allowUnknown: true)
        var best: (name: String, similarity: Double)?
        for (id, cls) in Vocabulary.classes.enumerated() where id != concept.classID && !concept.phrases.contains(cls.name.lowercased()) {
            let s = c.cosine(to: try encoder.encode(cls.name, allowUnknown: true))
            if best == nil || s > best!.similarity { best = (cls.name, s) }
        }
        guard let best else { throw ErasureError.badArgument("--target nearest: the world has no other class") }
        return best
    }
}
