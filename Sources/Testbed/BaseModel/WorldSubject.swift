import Attacks
import BLAS
import Detector
import Erasure
import Evaluation
import Flux
import Foundation
import Imaging
import Pipeline
import TextEncoder
import World

/// The small world as the subject of erasure, evaluation and attacks: the committed base model (or any model
/// of its shape) conditioned by MiniLM, 32×32 scenes as 64 packed tokens, and the world's captions — its
/// classes, colours, templates and synonyms — for every prompt the product asks for.
public final class WorldSubject: AttackSubject, @unchecked Sendable {
    public let transformer: FluxTransformer<Float>
    public let encoder: PromptEncoder

    public init(transformer: FluxTransformer<Float>, encoder: PromptEncoder) {
        self.transformer = transformer; self.encoder = encoder
    }

    // MARK: LatentSpace

    public var latentCount: Int { BaseModelSpec.tokens * BaseModelSpec.features }
    public var imageIds: [Double] { BaseModelSpec.imageIds }
    public func noise(seed: UInt64) -> [Float] { BaseModelSpec.noise(seed: seed) }

    // MARK: ErasureSubject

    public func concept(_ text: String, synonyms: [String]) throws -> ConceptSpec { try ConceptSpec.resolve(text, synonyms: synonyms) }

    public func trainingItems(concepts: [ConceptSpec], conceptCount: Int, neutralCount: Int, target: ErasureTarget,
                              seed: UInt64) throws -> [ErasureItem] {
        try ErasurePrompts.world(concepts: concepts, conceptCount: conceptCount, neutralCount: neutralCount, target: target, seed: seed)
    }

    public func neutralCaptions(count: Int, concepts: [ConceptSpec], target: ErasureTarget, seed: UInt64) throws -> [String] {
        try ErasurePrompts.world(concepts: concepts, conceptCount: 1, neutralCount: count, target: target, seed: seed)
            .filter { !$0.isConcept }.map(\.prompt)
    }

    public func nearestAnchor(to concept: ConceptSpec) throws -> (name: String, similarity: Double) {
        try ErasureTarget.nearestClass(to: concept, encoder: encoder.miniLM)
    }

    public func classID(of prompt: String) -> Int? { CaptionGrammar.mentions(in: prompt).first?.classID }

    // MARK: EvaluationSubject

    public var classNames: [String] { Vocabulary.classes.map(\.name) }

    public func conceptSets(classes: [Int], protocol p: EvaluationProtocol) -> [(name: String, prompts: [EvaluationPrompt])] {
        EvaluationPrompts.conceptSets(classes: classes, protocol: p)
    }

    public func neutralPrompts(excluding classes: [Int], protocol p: EvaluationProtocol) -> [EvaluationPrompt] {
        EvaluationPrompts.neutral(excluding: classes, protocol: p)
    }

    /// Real test scenes of the classes (test split of both datasets).
    public func realImages(classes: Set<Int>, protocol p: EvaluationProtocol) throws -> [(image: RGBImage, classID: Int)] {
        try SceneSampler.load(split: .test, seed: p.seed ^ 0x5245_414C)
            .firstScenes(showing: classes, count: p.realScenes, searchLimit: 50 * p.realScenes).map { ($0.image, $0.classID) }
    }

    public func image(fromLatent latent: [Float]) -> RGBImage { BaseModelSpec.image(fromLatent: latent) }

    // MARK: AttackSubject

    public func paraphrases(classes: [Int], count: Int, seed: UInt64) -> [String] {
        (0..<count).map { i in
            var rng = WorldRNG(seed: seed ^ 0x5041_5241, index: UInt64(i))
            let cls = classes[i % classes.count]
            let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
            let compose = i % 2 == 1
            let (ts, ss) = CaptionGrammar.choices(classID: cls, wording: compose ? .heldOutSynonyms : .heldOutBoth)
            let syn = Vocabulary.classes[cls].synonyms[ss[rng.below(ss.count)]]
            var colour = Vocabulary.colors[pair.object].name
            if compose { colour = EvaluationProtocol.attributes[rng.below(EvaluationProtocol.attributes.count)] + " " + colour }
            return CaptionGrammar.render(template: ts[rng.below(ts.count)], noun: syn.text, plural: syn.plural,
                                         objColor: colour, bgColor: Vocabulary.colors[pair.background].name)
        }
    }

    public func conceptPairs(classes: [Int], count: Int, seed: UInt64) -> [(with: String, without: String)] {
        (0..<count).map { i in
            var rng = WorldRNG(seed: seed ^ 0x52_4142, index: UInt64(i))
            let cls = classes[i % classes.count]
            let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
            let (ts, ss) = CaptionGrammar.choices(classID: cls, wording: .train)
            let c = Caption(classID: cls, objColor: pair.object, bgColor: pair.background,
                            template: ts[rng.below(ts.count)], synonym: ss[rng.below(ss.count)])
            return (c.text, c.deconcepted())
        }
    }

    public func neutralPrompt(seed: UInt64, index: UInt64) -> String {
        var rng = WorldRNG(seed: seed ^ 0x4E42, index: index)
        let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
        let t = CaptionGrammar.trainTemplateIDs[rng.below(CaptionGrammar.trainTemplateIDs.count)]
        return CaptionGrammar.render(template: t, noun: "object", plural: false, objColor: Vocabulary.colors[pair.object].name,
                                     bgColor: Vocabulary.colors[pair.background].name)
    }

    /// A training template, a colour pair and the class's first training name.
    public func conceptPrompt(classID: Int, seed: UInt64) -> String {
        var rng = WorldRNG(seed: seed ^ 0x5742_4F58, index: UInt64(classID))
        let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
        let ts = CaptionGrammar.trainTemplateIDs
        let t = ts[rng.below(ts.count)]
        let syn = Vocabulary.classes[classID].synonyms[Vocabulary.classes[classID].trainSynonymIndices[0]]
        return CaptionGrammar.render(template: t, noun: syn.text, plural: syn.plural, objColor: Vocabulary.colors[pair.object].name,
                                     bgColor: Vocabulary.colors[pair.background].name)
    }

    /// The first scenes of the train split (a fixed seed) showing one of `classes`, with their training captions.
    public func trainingImages(classes: Set<Int>, count: Int, seed: UInt64) throws -> [(latent: [Float], caption: String)] {
        try SceneSampler.load(split: .train, seed: seed)
            .firstScenes(showing: classes, count: count, searchLimit: 100 * count)
            .map { (SceneLatent.tokens(from: $0.image), $0.caption.text) }
    }
}

// MARK: the world's words for the product's types

extension ConceptSpec {
    /// A world class name or any of its synonyms resolves to the class (all its synonyms become phrases, and the
    /// world's grammar finds its mentions, plurals included); other text is a free concept whose only phrase is
    /// itself plus `synonyms`.
    public static func resolve(_ text: String, synonyms: [String] = []) throws -> ConceptSpec {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !t.isEmpty else { throw ErasureError.badArgument("--concept must not be empty") }
        if let m = CaptionGrammar.mentions(in: t).first, m.phrase == t {
            let c = Vocabulary.classes[m.classID], id = c.id
            return ConceptSpec(name: c.name, phrases: sortedPhrases(c.synonyms.map { $0.text } + synonyms), classID: id,
                               mentions: MentionFinder { text in CaptionGrammar.mentions(in: text).filter { $0.classID == id }.map(\.range) })
        }
        return try free(t, synonyms: synonyms)
    }
}

extension ErasurePrompts {
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

extension EvaluationPrompts {
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
}

extension DetectorPrediction {
    /// The prediction as the evaluation reads it.
    public var judgement: Judgement { Judgement(classID: classID, objColor: objColor, bgColor: bgColor) }
}

/// The detector judges the world's images for the evaluation and the attacks.
extension SceneDetector: ImageJudge {
    public func judge(_ images: [RGBImage]) -> [Judgement] { predict(images).map(\.judgement) }
}

extension Eraser {
    /// An eraser of the world's base model `model`, conditioned by `encoder`.
    public convenience init(model: FluxTransformer<Float>, encoder: PromptEncoder, items: [ErasureItem], options: ErasureOptions) throws {
        try self.init(subject: WorldSubject(transformer: model, encoder: encoder), items: items, options: options)
    }
}
