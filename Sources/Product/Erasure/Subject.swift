import BLAS
import Flux
import Pipeline

/// What an erasure acts on: everything erasure, evaluation and attacks need to know about a text-to-image
/// model, and nothing else. The transformer; how prompts become its conditioning (a text encoder whose
/// feed-forward units can be masked, with gradient, and the transformer's text padding — `encoder`); the latent
/// geometry, the image tokens' positions and the starting noise of a seed (`LatentSpace`); and the subject's
/// own words: how it resolves a concept's name, which prompts train an erasure, which neutral captions keep the
/// text encoder. The small world's base model implements it (`WorldSubject`, in the testbed); a FLUX.1
/// pipeline will too.
public protocol ErasureSubject: LatentSpace {
    /// The original transformer: targets come from it, and masks are learned on it.
    var transformer: FluxTransformer<Float> { get }
    /// Prompts to conditioning, and the text encoder whose units `text_ff` sites mask.
    var encoder: PromptEncoder { get }
    /// The concept a user names, with the phrases that name it (and the class, when the subject has classes).
    func concept(_ text: String, synonyms: [String]) throws -> ConceptSpec
    /// Training prompts: `conceptCount` per concept and `neutralCount` naming none of them, with their targets
    /// and noise seeds, a pure function of `seed`.
    func trainingItems(concepts: [ConceptSpec], conceptCount: Int, neutralCount: Int, target: ErasureTarget,
                       seed: UInt64) throws -> [ErasureItem]
    /// `count` neutral captions the text-preservation term keeps, a pure function of `seed`.
    func neutralCaptions(count: Int, concepts: [ConceptSpec], target: ErasureTarget, seed: UInt64) throws -> [String]
    /// `--target nearest`: the subject's class nearest the concept, as an anchor phrase, and how near it is.
    func nearestAnchor(to concept: ConceptSpec) throws -> (name: String, similarity: Double)
    /// The subject's class a prompt shows, when it can tell (prompt files' neutral prompts).
    func classID(of prompt: String) -> Int?
}
