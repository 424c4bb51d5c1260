import Foundation

/// A caption template. Slots: `{obj}` the class synonym, `{color}` the object colour, `{bg}` the background
/// colour, `{a_obj}` the object's indefinite article ("a"/"an" by the next word, nothing for a plural
/// synonym), `{a}` "a"/"an" by the next word.
public struct CaptionTemplate: Hashable, Sendable {
    public let id: Int
    public let pattern: String
    public let heldOut: Bool
}

/// Which wording a caption may use.
public enum CaptionWording: String, Sendable, CaseIterable {
    /// Training templates and training synonyms (the only wording of the train split).
    case train
    /// Training templates, held-out synonyms.
    case heldOutSynonyms
    /// Held-out templates, training synonyms.
    case heldOutTemplates
    /// Held-out templates and held-out synonyms.
    case heldOutBoth

    public var heldOutTemplate: Bool { self == .heldOutTemplates || self == .heldOutBoth }
    public var heldOutSynonym: Bool { self == .heldOutSynonyms || self == .heldOutBoth }
}

/// A scene's caption with its structured fields.
public struct Caption: Hashable, Sendable {
    public let classID: Int
    /// Indices into `Vocabulary.colors`.
    public let objColor: Int
    public let bgColor: Int
    /// Index into `CaptionGrammar.templates`.
    public let template: Int
    /// Index into `Vocabulary.classes[classID].synonyms`.
    public let synonym: Int
    public let text: String

    public init(classID: Int, objColor: Int, bgColor: Int, template: Int, synonym: Int) {
        self.classID = classID
        self.objColor = objColor
        self.bgColor = bgColor
        self.template = template
        self.synonym = synonym
        let syn = Vocabulary.classes[classID].synonyms[synonym]
        text = CaptionGrammar.render(template: template, noun: syn.text, plural: syn.plural,
                                     objColor: Vocabulary.colors[objColor].name, bgColor: Vocabulary.colors[bgColor].name)
    }

    public var templateHeldOut: Bool { CaptionGrammar.templates[template].heldOut }
    public var synonymHeldOut: Bool { Vocabulary.classes[classID].synonyms[synonym].heldOut }
    public var heldOut: Bool { templateHeldOut || synonymHeldOut }
    public var synonymText: String { Vocabulary.classes[classID].synonyms[synonym].text }

    /// The same sentence with the concept phrase replaced by a generic singular noun ("a red object on a
    /// blue background"): the class is gone, colours and template stay.
    public func deconcepted(generic: String = "object") -> String {
        CaptionGrammar.render(template: template, noun: generic, plural: false,
                              objColor: Vocabulary.colors[objColor].name, bgColor: Vocabulary.colors[bgColor].name)
    }
}

/// The caption grammar: 6 training templates and 3 held-out ones (never used for the train split).
public enum CaptionGrammar {
    public static let templates: [CaptionTemplate] = {
        let train = [
            "{a_obj} {color} {obj} on {a} {bg} background",
            "{a} {bg} background with {a_obj} {color} {obj}",
            "a photo of {a_obj} {color} {obj}, {bg} background",
            "{a_obj} {color} {obj} in front of {a} {bg} backdrop",
            "{color} {obj}, {bg} background",
            "a picture of {a_obj} {color} {obj} against {a} {bg} background",
        ]
        let heldOut = [
            "an image showing {a_obj} {obj} colored {color} against {bg}",
            "{bg} surroundings around {a_obj} {color} {obj}",
            "a drawing of {a_obj} {obj} painted {color}, set on {bg}",
        ]
        return train.enumerated().map { CaptionTemplate(id: $0.offset, pattern: $0.element, heldOut: false) }
            + heldOut.enumerated().map { CaptionTemplate(id: train.count + $0.offset, pattern: $0.element, heldOut: true) }
    }()

    public static var trainTemplateIDs: [Int] { templates.filter { !$0.heldOut }.map(\.id) }
    public static var heldOutTemplateIDs: [Int] { templates.filter { $0.heldOut }.map(\.id) }

    /// Template ids and synonym indices of class `classID` that a wording allows.
    public static func choices(classID: Int, wording: CaptionWording) -> (templates: [Int], synonyms: [Int]) {
        let c = Vocabulary.classes[classID]
        return (wording.heldOutTemplate ? heldOutTemplateIDs : trainTemplateIDs,
                wording.heldOutSynonym ? c.heldOutSynonymIndices : c.trainSynonymIndices)
    }

    /// "an" before a vowel sound, else "a" (with the exceptions the vocabulary needs: "ewe", "uni…", "eu…").
    public static func article(for word: String) -> String {
        let w = word.lowercased()
        guard let f = w.first else { return "a" }
        if ["ewe", "uni", "use", "eu", "one"].contains(where: { w.hasPrefix($0) }) { return "a" }
        return "aeiou".contains(f) ? "an" : "a"
    }

    /// Fills a template. Articles look at the word that follows them.
    public static func render(template: Int, noun: String, plural: Bool, objColor: String, bgColor: String) -> String {
        enum Piece { case text(String), article(plural: Bool) }
        var pieces = [Piece]()
        var rest = Substring(templates[template].pattern)
        while let open = rest.firstIndex(of: "{") {
            if open > rest.startIndex { pieces.append(.text(String(rest[..<open]))) }
            let close = rest[open...].firstIndex(of: "}")!
            let slot = rest[rest.index(after: open)..<close]
            switch slot {
            case "obj": pieces.append(.text(noun))
            case "color": pieces.append(.text(objColor))
            case "bg": pieces.append(.text(bgColor))
            case "a_obj": pieces.append(.article(plural: plural))
            case "a": pieces.append(.article(plural: false))
            default: preconditionFailure("unknown slot {\(slot)}")
            }
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { pieces.append(.text(String(rest))) }
        var out = ""
        for (i, p) in pieces.enumerated() {
            switch p {
            case .text(let t): out += t
            case .article(let pl):
                if pl { continue }
                let next = pieces[(i + 1)...].lazy.compactMap { p -> String? in
                    if case .text(let t) = p, !t.trimmingCharacters(in: .whitespaces).isEmpty { return t } else { return nil }
                }.first ?? ""
                let word = next.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
                out += article(for: word)
            }
        }
        // A dropped article leaves a double or leading space.
        while out.contains("  ") { out = out.replacingOccurrences(of: "  ", with: " ") }
        return out.trimmingCharacters(in: .whitespaces)
    }

    /// Every caption of a class for the given wording, optionally restricted to one object and/or background
    /// colour (allowed pairs only), ordered by colour pair, then template, then synonym. Used for erasure and
    /// evaluation prompts.
    public static func prompts(classID: Int, objColor: Int? = nil, bgColor: Int? = nil, wording: CaptionWording = .train) -> [Caption] {
        let (ts, ss) = choices(classID: classID, wording: wording)
        var out = [Caption]()
        for pair in Vocabulary.colorPairs
        where (objColor == nil || pair.object == objColor) && (bgColor == nil || pair.background == bgColor) {
            for t in ts {
                for s in ss {
                    out.append(Caption(classID: classID, objColor: pair.object, bgColor: pair.background, template: t, synonym: s))
                }
            }
        }
        return out
    }

    /// Every phrase that names a class (all synonyms, training and held-out), longest first, with its class.
    public static let conceptPhrases: [(phrase: String, classID: Int)] = {
        Vocabulary.classes.flatMap { c in c.synonyms.map { ($0.text.lowercased(), c.id) } }
            .sorted { $0.0.count != $1.0.count ? $0.0.count > $1.0.count : $0.0 < $1.0 }
    }()

    private static let phraseBytes: [(bytes: [UInt8], classID: Int, phrase: String)] =
        conceptPhrases.map { (Array($0.phrase.utf8), $0.classID, $0.phrase) }

    /// Classes named in free text: whole-phrase, case-insensitive (ASCII) matches, longest first and
    /// non-overlapping, in order of appearance. Letters, digits, "-" and non-ASCII characters join words.
    public static func mentions(in text: String) -> [(range: Range<String.Index>, classID: Int, phrase: String)] {
        let b = text.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
        @inline(__always) func isWord(_ c: UInt8) -> Bool {
            (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 45 || c >= 0x80
        }
        var found = [(range: Range<String.Index>, classID: Int, phrase: String)]()
        var i = 0
        while i < b.count {
            guard isWord(b[i]), i == 0 || !isWord(b[i - 1]) else { i += 1; continue }
            var next = i + 1
            for (p, cls, phrase) in phraseBytes where p.count <= b.count - i && p[0] == b[i] {
                let end = i + p.count
                guard end == b.count || !isWord(b[end]) else { continue }
                var same = true
                for k in 1..<p.count where b[i + k] != p[k] { same = false; break }
                if same {
                    let u = text.utf8
                    found.append((u.index(u.startIndex, offsetBy: i)..<u.index(u.startIndex, offsetBy: end), cls, phrase))
                    next = end
                    break
                }
            }
            i = next
        }
        return found
    }

    /// Replaces every phrase naming a class (or only classes in `classes`) by `generic`, fixing an "a"/"an"
    /// directly before it ("an elephant" -> "an object" is kept, "a ox"-style errors are not made). For captions
    /// built by the grammar prefer `Caption.deconcepted`, which also gives a plural noun its article back.
    public static func deconcept(_ text: String, classes: Set<Int>? = nil, generic: String = "object") -> String {
        var out = ""
        var last = text.startIndex
        for m in mentions(in: text) where classes == nil || classes!.contains(m.classID) {
            out += text[last..<m.range.lowerBound]
            for art in ["an ", "a "] where out.lowercased().hasSuffix(art) {
                let head = out.dropLast(art.count)
                if head.isEmpty || head.last == " " {
                    out = String(head) + article(for: generic) + " "
                }
                break
            }
            out += generic
            last = m.range.upperBound
        }
        out += text[last...]
        return out
    }
}
