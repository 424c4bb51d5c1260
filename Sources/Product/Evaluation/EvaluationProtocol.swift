import Erasure
import Foundation
import Imaging

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

/// The pinned protocol's prompt sets. The subject builds them (`EvaluationSubject.conceptSets`, `neutralPrompts`);
/// every prompt's noise seed comes from here.
public enum EvaluationPrompts {
    /// The noise seed of prompt i of a set (`salt` 1–4: the concept sets in order, 9: the neutral set).
    public static func seed(_ p: EvaluationProtocol, salt: UInt64, _ i: Int) -> UInt64 {
        p.seed &+ 0xEA_0000_0000 &+ salt &* 1_000_000 &+ UInt64(i)
    }
}

/// What the evaluation reads an image as: the object's class, the object's colour and the background colour
/// (indices into the subject's classes and colours).
public struct Judgement: Equatable, Sendable {
    public let classID: Int
    public let objColor: Int
    public let bgColor: Int
    public init(classID: Int, objColor: Int, bgColor: Int) { self.classID = classID; self.objColor = objColor; self.bgColor = bgColor }
}

/// Reads images for the evaluation: a detector (the world's CNN) or, for real pipelines, a CLIP-style judge.
public protocol ImageJudge {
    func judge(_ images: [RGBImage]) -> [Judgement]
    /// Feature vectors for the feature distance and the in-domain FID.
    func features(_ images: [RGBImage]) -> [[Float]]
}

/// A subject the pinned protocol can evaluate: its prompt sets, class names, real images and how a final latent
/// becomes an image.
public protocol EvaluationSubject: ErasureSubject {
    /// The subject's class names, by class id.
    var classNames: [String] { get }
    /// The four concept sets (training templates, held-out templates, held-out synonyms, compositions),
    /// `p.samples` prompts each, cycling over `classes`.
    func conceptSets(classes: [Int], protocol p: EvaluationProtocol) -> [(name: String, prompts: [EvaluationPrompt])]
    /// `p.perClass` prompts for every class not in `classes`.
    func neutralPrompts(excluding classes: [Int], protocol p: EvaluationProtocol) -> [EvaluationPrompt]
    /// `p.realScenes` real images showing one of `classes` (the FID reference and the judge's ceiling).
    func realImages(classes: Set<Int>, protocol p: EvaluationProtocol) throws -> [(image: RGBImage, classID: Int)]
    /// A final packed latent as an RGB image in [0, 1].
    func image(fromLatent latent: [Float]) -> RGBImage
}
