import Flux
import Foundation

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

    public init(prompt: String, targetPrompt: String, isConcept: Bool, seed: UInt64, classID: Int?, objColor: Int?, bgColor: Int?) {
        self.prompt = prompt; self.targetPrompt = targetPrompt; self.isConcept = isConcept; self.seed = seed
        self.classID = classID; self.objColor = objColor; self.bgColor = bgColor
    }
}

/// A concept to erase: the phrases that name it and, when it is one of the subject's classes, the class.
/// A subject that knows how its prompts name classes (the world's caption grammar, with plurals) gives the
/// concept a `mentions` finder; without one, a mention is any phrase as a whole word, case-insensitive.
public struct ConceptSpec: Codable, Equatable, Sendable {
    public let name: String
    public let phrases: [String]        // lower-case; longest first
    public let classID: Int?
    /// Where a text names this concept (set by the subject that resolved it; not stored in files).
    public var mentions: MentionFinder?

    public init(name: String, phrases: [String], classID: Int?, mentions: MentionFinder? = nil) {
        self.name = name; self.phrases = phrases; self.classID = classID; self.mentions = mentions
    }

    /// A free concept: the text itself and `synonyms`, lower-case, longest first.
    public static func free(_ text: String, synonyms: [String] = []) throws -> ConceptSpec {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !t.isEmpty else { throw ErasureError.badArgument("--concept must not be empty") }
        return ConceptSpec(name: t, phrases: sortedPhrases([t] + synonyms), classID: nil)
    }

    /// Lower-case, without repeats, longest first (then alphabetical).
    public static func sortedPhrases(_ p: [String]) -> [String] {
        Set(p.map { $0.lowercased() }).sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    public struct MentionFinder: Sendable {
        public let find: @Sendable (String) -> [Range<String.Index>]
        public init(_ find: @escaping @Sendable (String) -> [Range<String.Index>]) { self.find = find }
    }

    enum CodingKeys: String, CodingKey { case name, phrases, classID }

    public static func == (a: ConceptSpec, b: ConceptSpec) -> Bool {
        a.name == b.name && a.phrases == b.phrases && a.classID == b.classID
    }

    /// Whether the text names this concept (whole words, case-insensitive).
    public func isMentioned(in text: String) -> Bool { !ranges(in: text).isEmpty }

    func ranges(in text: String) -> [Range<String.Index>] {
        if let mentions { return mentions.find(text) }
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
                if head.isEmpty || head.last == " " { out = String(head) + Self.article(for: phrase) + " " }
                break
            }
            out += phrase
            last = r.upperBound
        }
        return out + text[last...]
    }

    /// "a" or "an" before a word.
    public static func article(for word: String) -> String {
        let w = word.lowercased()
        guard let f = w.first else { return "a" }
        if ["ewe", "uni", "use", "eu", "one"].contains(where: { w.hasPrefix($0) }) { return "a" }
        return "aeiou".contains(f) ? "an" : "a"
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

    /// Prompts from files (one per line, blank lines and lines starting with # skipped): every concept prompt
    /// must mention a concept and no neutral prompt may.
    /// `classOf` names the subject's class a neutral prompt shows, when it knows one.
    public static func files(conceptFile: String, neutralFile: String?, concepts: [ConceptSpec], target: ErasureTarget,
                             seed: UInt64, classOf: (String) -> Int? = { _ in nil }) throws -> [ErasureItem] {
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
                                         classID: classOf(p), objColor: nil, bgColor: nil))
            }
        }
        return interleaved(items)
    }

    /// Concept and neutral items spread evenly through the list, concept first: with equal counts they alternate
    /// (as in the authors' data loader); with unequal counts each stretch of the list keeps the overall ratio
    /// (20 concept and 60 neutral: c n n n c n n n …), so every accumulated step sees both terms rather than
    /// ending each epoch on a run of one kind.
    public static func interleaved(_ items: [ErasureItem]) -> [ErasureItem] {
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
