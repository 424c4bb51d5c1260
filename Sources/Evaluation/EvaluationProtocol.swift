import Erasure
import Foundation
import World

/// The pinned evaluation protocol: which prompts, seeds, sample counts and thresholds a report uses. It is
/// written at the top of every report; two reports are comparable when their protocols are equal.
public struct EvaluationProtocol: Codable, Equatable, Sendable {
    public static let currentVersion = "mce-eval-1"

    public var version = EvaluationProtocol.currentVersion
    /// Prompts per concept set (training templates, held-out templates, held-out synonyms, compositions).
    public var samples = 32
    /// Neutral prompts per other class (19 classes for one erased class).
    public var perClass = 4
    public var seed: UInt64 = 0
    public var samplingSteps = 20
    public var guidance = 3.0
    /// Real test scenes the in-domain FIDs compare with (test split of both datasets, classes of the neutral set).
    public var realScenes = 200
    public var thresholds = Thresholds()

    public struct Thresholds: Codable, Equatable, Sendable {
        public var conceptGone = 0.05           // concept ACC after, training templates
        public var conceptPresent = 0.85        // concept ACC before
        public var neutralDrop = 0.03           // neutral object accuracy may fall at most this much
        public var ssim = 0.85                  // mean SSIM original vs erased, neutral prompts
        public var background = 0.9             // background colour kept on concept prompts
        public init() {}
    }

    /// How each set is built, for the report header.
    public static let setDescriptions: [(name: String, description: String)] = [
        ("training templates", "training templates and training synonyms (the wording erasure trained on, new colours and seeds)"),
        ("held-out templates", "templates training never saw, training synonyms"),
        ("held-out synonyms", "training templates, synonyms training never saw"),
        ("compositions", "the concept with an extra attribute word (size, age, texture, …) before its colour"),
        ("neutral", "every other class, colour pairs cycling through the palette, training wording"),
    ]

    /// Words composed with the concept in the "compositions" set (the base model never saw them in a caption).
    public static let attributes = ["small", "large", "tiny", "big", "old", "shiny", "striped", "cute", "dark", "plain"]

    public init() {}
}

/// One evaluation prompt with the seed of its initial noise and the scene it asks for.
public struct EvaluationPrompt: Codable, Equatable, Sendable {
    public let text: String
    public let seed: UInt64
    public let classID: Int
    public let objColor: Int
    public let bgColor: Int

    public init(text: String, seed: UInt64, classID: Int, objColor: Int, bgColor: Int) {
        self.text = text; self.seed = seed; self.classID = classID; self.objColor = objColor; self.bgColor = bgColor
    }
}

public enum EvaluationPrompts {
    /// The four concept sets, `p.samples` prompts each, cycling over the erased classes.
    public static func conceptSets(classes: [Int], protocol p: EvaluationProtocol) -> [(name: String, prompts: [EvaluationPrompt])] {
        guard !classes.isEmpty else { return [] }
        let sets: [(String, CaptionWording, Bool)] = [
            ("training templates", .train, false), ("held-out templates", .heldOutTemplates, false),
            ("held-out synonyms", .heldOutSynonyms, false), ("compositions", .train, true),
        ]
        return sets.enumerated().map { salt, set in
            let prompts = (0..<p.samples).map { i -> EvaluationPrompt in
                var rng = WorldRNG(seed: p.seed ^ 0xC0_0000 ^ UInt64(salt + 1), index: UInt64(i))
                let cls = classes[i % classes.count]
                let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
                let (ts, ss) = CaptionGrammar.choices(classID: cls, wording: set.1)
                let t = ts[rng.below(ts.count)], s = ss[rng.below(ss.count)]
                let syn = Vocabulary.classes[cls].synonyms[s]
                var colour = Vocabulary.colors[pair.object].name
                if set.2 { colour = EvaluationProtocol.attributes[rng.below(EvaluationProtocol.attributes.count)] + " " + colour }
                let text = CaptionGrammar.render(template: t, noun: syn.text, plural: syn.plural, objColor: colour,
                                                 bgColor: Vocabulary.colors[pair.background].name)
                return EvaluationPrompt(text: text, seed: seed(p, salt: UInt64(salt + 1), i), classID: cls,
                                        objColor: pair.object, bgColor: pair.background)
            }
            return (set.0, prompts)
        }
    }

    /// `p.perClass` prompts for every class not erased; colour pairs cycle through the whole palette.
    public static func neutral(excluding classes: [Int], protocol p: EvaluationProtocol) -> [EvaluationPrompt] {
        let others = (0..<Vocabulary.classCount).filter { !classes.contains($0) }
        let pairs = Vocabulary.colorPairs
        var out: [EvaluationPrompt] = []
        for (k, cls) in others.enumerated() {
            for j in 0..<p.perClass {
                let g = k * p.perClass + j
                var rng = WorldRNG(seed: p.seed ^ 0x4E_0000, index: UInt64(g))
                let pair = pairs[(g * 7) % pairs.count]
                let (ts, ss) = CaptionGrammar.choices(classID: cls, wording: .train)
                let c = Caption(classID: cls, objColor: pair.object, bgColor: pair.background,
                                template: ts[rng.below(ts.count)], synonym: ss[rng.below(ss.count)])
                out.append(EvaluationPrompt(text: c.text, seed: seed(p, salt: 9, g), classID: cls,
                                            objColor: pair.object, bgColor: pair.background))
            }
        }
        return out
    }

    static func seed(_ p: EvaluationProtocol, salt: UInt64, _ i: Int) -> UInt64 {
        p.seed &+ 0xEA_0000_0000 &+ salt &* 1_000_000 &+ UInt64(i)
    }
}
