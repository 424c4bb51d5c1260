/// One generated scene with everything needed to train on it or to evaluate it.
public struct Scene: Sendable {
    public let index: Int
    public let image: RGBImage
    public let caption: Caption
    public var classID: Int { caption.classID }
    public var objColor: Int { caption.objColor }
    public var bgColor: Int { caption.bgColor }
    public let source: SourceDataset
    /// Index of the silhouette within the split's `Dataset`, and within the original file.
    public let datasetIndex: Int
    public let sourceIndex: Int
    public let placement: Placement
}

/// Draws scenes for one split from that split's images, balanced over the 20 classes.
///
/// Scene `i` is a pure function of (seed, i), so any scene can be recomputed alone:
///  * class: scenes come in blocks of 20; block k = i / 20 uses a permutation of the 20 classes shuffled
///    by `WorldRNG(seed: seed, index: k | 1<<63)`, and scene i gets entry i % 20 — every block of 20 has
///    each class once;
///  * then `WorldRNG(seed: seed, index: i)` draws, in order: the image (uniform over that class's images in
///    the split), the colour pair (uniform over `Vocabulary.colorPairs`), the template and the synonym
///    (uniform over those the wording allows), and the placement (`Placement.random`).
/// The train split only takes `.train` wording; the test split takes any.
public struct SceneSampler: Sendable {
    public let split: Split
    public let wording: CaptionWording
    public let seed: UInt64
    public let fashion: Dataset
    public let animal: Dataset
    /// For each class id, the indices of its images in `fashion` or `animal`.
    public let classImages: [[Int]]

    public init(fashion: Dataset, animal: Dataset, wording: CaptionWording = .train, seed: UInt64) throws {
        guard fashion.split == animal.split else {
            throw WorldError.invalidArgument("SceneSampler: the Fashion-MNIST and Animal-MNIST data sets come from different splits")
        }
        guard fashion.split == .test || wording == .train else {
            throw WorldError.invalidArgument("SceneSampler: the train split uses training wording only (asked for \(wording.rawValue))")
        }
        split = fashion.split
        self.wording = wording
        self.seed = seed
        self.fashion = fashion
        self.animal = animal
        var ci = [[Int]](repeating: [], count: Vocabulary.classCount)
        for i in 0..<fashion.count { ci[Vocabulary.classID(source: .fashionMNIST, label: fashion.label(i))].append(i) }
        for i in 0..<animal.count { ci[Vocabulary.classID(source: .animalMNIST, label: animal.label(i))].append(i) }
        if let empty = ci.firstIndex(where: \.isEmpty) {
            throw WorldError.invalidArgument("SceneSampler: class \(Vocabulary.classes[empty].name) has no images in the \(split.rawValue) split")
        }
        classImages = ci
    }

    /// Loads both data sets of `split` from the data directory (see `DataPaths`).
    public static func load(split: Split, wording: CaptionWording = .train, seed: UInt64, root: String? = nil) throws -> SceneSampler {
        try SceneSampler(fashion: FashionMNIST.load(split: split, root: root), animal: AnimalMNIST.load(split: split, root: root),
                         wording: wording, seed: seed)
    }

    /// The class of scene i (balanced in blocks of 20).
    public func classID(ofScene i: Int) -> Int {
        var perm = Array(0..<Vocabulary.classCount)
        var rng = WorldRNG(seed: seed, index: UInt64(i / Vocabulary.classCount) | (1 << 63))
        rng.shuffle(&perm)
        return perm[i % Vocabulary.classCount]
    }

    /// The structured choices of scene i, without rendering.
    public func plan(_ i: Int) -> (caption: Caption, datasetIndex: Int, placement: Placement) {
        precondition(i >= 0)
        let cls = classID(ofScene: i)
        var rng = WorldRNG(seed: seed, index: UInt64(i))
        let imgs = classImages[cls]
        let di = imgs[rng.below(imgs.count)]
        let pair = Vocabulary.colorPairs[rng.below(Vocabulary.colorPairs.count)]
        let (ts, ss) = CaptionGrammar.choices(classID: cls, wording: wording)
        let t = ts[rng.below(ts.count)]
        let s = ss[rng.below(ss.count)]
        let p = Placement.random(&rng)
        return (Caption(classID: cls, objColor: pair.object, bgColor: pair.background, template: t, synonym: s), di, p)
    }

    /// The first `count` scenes (in index order) whose class is one of `classes`, looking at most at
    /// `searchLimit` scenes (fewer are returned when the limit is reached first).
    public func firstScenes(showing classes: Set<Int>, count: Int, searchLimit: Int) -> [Scene] {
        var out: [Scene] = []
        var i = 0
        while out.count < count && i < searchLimit {
            let s = scene(i)
            if classes.contains(s.classID) { out.append(s) }
            i += 1
        }
        return out
    }

    public func scene(_ i: Int) -> Scene {
        let (cap, di, p) = plan(i)
        let c = Vocabulary.classes[cap.classID]
        let ds = c.source == .fashionMNIST ? fashion : animal
        let img = SceneRenderer.render(mask: ds.image(di), object: Vocabulary.colors[cap.objColor],
                                       background: Vocabulary.colors[cap.bgColor], placement: p)
        return Scene(index: i, image: img, caption: cap, source: c.source, datasetIndex: di,
                     sourceIndex: ds.sourceIndices[di], placement: p)
    }

    /// Scenes start..<start+count.
    public func scenes(_ range: Range<Int>) -> [Scene] { range.map(scene) }
}
