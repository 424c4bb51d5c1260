import BLAS
import Flux
import Foundation
import Imaging
import Pipeline
import TextEncoder
import World

/// The shape of the small world's images as the transformer sees them: a 32×32 RGB scene is
/// space-to-depth'ed by 2 and FLUX-packed 2×2 into 64 tokens of 48 features (see `SceneLatent`).
public enum BaseModelSpec {
    public static let imageSize = 32
    public static let gridSide = 8
    public static var tokens: Int { gridSide * gridSide }
    public static let features = SceneLatent.featuresPerToken
    public static let imageIds = Packing.imageIds(gridHeight: gridSide, gridWidth: gridSide)
    /// Where the committed model lives, relative to the repository root.
    public static let defaultModelPath = "models/base"
    /// Sampling defaults of the committed model: 20 Euler steps with classifier-free guidance 3 (object shapes
    /// are recognised far more often with guidance than without; the erasure objective samples the same way).
    public static let defaultSteps = 20
    public static let defaultGuidance = 3.0

    /// The architecture: FLUX.1's, with MiniLM's 384-d text states and pooled embedding.
    public static func config(width: Int, headDim: Int = 64, doubleBlocks: Int, singleBlocks: Int) -> FluxConfig {
        let rest = headDim - 8
        return FluxConfig(inChannels: features, numLayers: doubleBlocks, numSingleLayers: singleBlocks,
                          attentionHeadDim: headDim, numAttentionHeads: width / headDim, jointAttentionDim: 384,
                          pooledProjectionDim: 384, guidanceEmbeds: false, axesDimsRope: [8, rest / 2, rest - rest / 2])
    }

    /// Starting noise x_T for one sample, a pure function of the seed.
    public static func noise(seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed ^ 0x6E6F_6973_655F_7854)
        return (0..<(tokens * features)).map { _ in Float(rng.normal()) }
    }

    /// The world's latent space (geometry, positions, noise) for the engine's `Generator`.
    public static let space: LatentSpace = WorldLatentSpace()

    /// Packed tokens in [−1, 1] (clamped) → RGB image in [0, 1].
    public static func image(fromLatent l: [Float]) -> RGBImage {
        var img = SceneLatent.image(fromTokens: l, width: imageSize, height: imageSize)
        for i in img.data.indices { img.data[i] = min(max(img.data[i], 0), 1) }
        return img
    }
}

/// `BaseModelSpec` as a `LatentSpace`.
final class WorldLatentSpace: LatentSpace, @unchecked Sendable {
    var latentCount: Int { BaseModelSpec.tokens * BaseModelSpec.features }
    var imageIds: [Double] { BaseModelSpec.imageIds }
    func noise(seed: UInt64) -> [Float] { BaseModelSpec.noise(seed: seed) }
}

extension PromptEncoder {
    /// MiniLM from `directory` (default: the installed one), sequences padded to the world's longest caption.
    public convenience init(directory: String? = nil) throws {
        self.init(miniLM: try MiniLM(directory: directory ?? MiniLM.defaultDirectory()))
    }

    /// `miniLM`, sequences padded to the world's longest caption.
    public convenience init(miniLM: MiniLM) {
        self.init(miniLM: miniLM, paddedLength: Self.longestWorldCaption(miniLM))
    }

    /// Tokens (with [CLS]/[SEP]) of the longest caption over every template and synonym, training and held-out,
    /// with the colour names that tokenize longest.
    static func longestWorldCaption(_ m: MiniLM) -> Int {
        func count(_ t: String) -> Int { (try? m.tokenIds(t, allowUnknown: true).count) ?? 0 }
        let colours = Vocabulary.colors.map(\.name).sorted { count($0) > count($1) }
        let (c1, c2) = (colours[0], colours.count > 1 ? colours[1] : colours[0])
        var longest = 2
        for t in CaptionGrammar.templates.indices {
            for cls in Vocabulary.classes {
                for syn in cls.synonyms {
                    let text = CaptionGrammar.render(template: t, noun: syn.text, plural: syn.plural, objColor: c1, bgColor: c2)
                    longest = max(longest, count(text))
                }
            }
        }
        return longest
    }
}

extension Generator {
    /// A generator of the world's 32×32 scenes.
    public convenience init(model: FluxTransformer<Float>, encoder: PromptEncoder, steps: Int, guidanceScale: Double) {
        self.init(model: model, encoder: encoder, space: BaseModelSpec.space, steps: steps, guidanceScale: guidanceScale)
    }

    public func images(prompts: [String], seeds: [UInt64], masks: MaskSet<Float> = MaskSet(),
                       progress: ((Int, Int) -> Void)? = nil) throws -> [RGBImage] {
        try latents(prompts: prompts, seeds: seeds, masks: masks, progress: progress).map(BaseModelSpec.image(fromLatent:))
    }

    public func images(encodings: [TextEncoding], seeds: [UInt64], masks: MaskSet<Float> = MaskSet(),
                       progress: ((Int, Int) -> Void)? = nil) throws -> [RGBImage] {
        try latents(encodings: encodings, seeds: seeds, masks: masks, progress: progress).map(BaseModelSpec.image(fromLatent:))
    }
}
