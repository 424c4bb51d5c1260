import Foundation
import World

/// The fixed evaluation: real scenes rendered from the test splits (which training never sees).
public enum DetectorEvaluation {
    /// Scene seed of the evaluation sampler ("DETEVAL1").
    public static let seed: UInt64 = 0x4445_5445_5641_4C31
    /// Scenes in the committed report (200 per class; the sampler balances classes in blocks of 20).
    public static let standardCount = 4000

    /// The test-split sampler of the evaluation (training wording; the wording only shifts which random
    /// placement each scene gets).
    public static func sampler(root: String? = nil) throws -> SceneSampler {
        try SceneSampler.load(split: .test, wording: .train, seed: seed, root: root)
    }
}

/// Accuracies of a detector on a set of scenes.
public struct DetectorReport: Codable, Equatable, Sendable {
    public struct ClassResult: Codable, Equatable, Sendable {
        public var id: Int
        public var name: String
        public var source: String
        public var count: Int
        public var correct: Int
        public var accuracy: Double
        /// The class most often predicted instead (nil when never wrong).
        public var mostConfusedWith: String?
    }

    public var split: String
    public var seed: UInt64
    public var count: Int
    /// Fraction of scenes whose object class / object colour / background colour is right.
    public var classAccuracy: Double
    public var objColorAccuracy: Double
    public var bgColorAccuracy: Double
    /// All three right.
    public var allCorrect: Double
    public var fashionClassAccuracy: Double
    public var animalClassAccuracy: Double
    public var perClass: [ClassResult]
    /// confusion[true][predicted] counts.
    public var confusion: [[Int]]

    public init(split: String, seed: UInt64, truth: [(Int, Int, Int)], predictions: [DetectorPrediction]) {
        precondition(truth.count == predictions.count)
        let n = truth.count, C = Vocabulary.classCount
        self.split = split
        self.seed = seed
        count = n
        var conf = [[Int]](repeating: [Int](repeating: 0, count: C), count: C)
        var cls = 0, obj = 0, bg = 0, all = 0
        for (t, p) in zip(truth, predictions) {
            conf[t.0][p.classID] += 1
            let a = t.0 == p.classID, b = t.1 == p.objColor, c = t.2 == p.bgColor
            cls += a ? 1 : 0; obj += b ? 1 : 0; bg += c ? 1 : 0; all += (a && b && c) ? 1 : 0
        }
        let d = Double(max(n, 1))
        classAccuracy = Double(cls) / d
        objColorAccuracy = Double(obj) / d
        bgColorAccuracy = Double(bg) / d
        allCorrect = Double(all) / d
        confusion = conf
        let perClass = Vocabulary.classes.map { c in
            let row = conf[c.id], total = row.reduce(0, +)
            var worst: Int? = nil
            for j in 0..<C where j != c.id && row[j] > 0 && (worst == nil || row[j] > row[worst!]) { worst = j }
            return ClassResult(id: c.id, name: c.name, source: c.source.rawValue, count: total, correct: row[c.id],
                               accuracy: total == 0 ? 0 : Double(row[c.id]) / Double(total),
                               mostConfusedWith: worst.map { Vocabulary.classes[$0].name })
        }
        func group(_ s: SourceDataset) -> Double {
            let rs = perClass.filter { $0.source == s.rawValue }
            let t = rs.reduce(0) { $0 + $1.count }
            return t == 0 ? 0 : Double(rs.reduce(0) { $0 + $1.correct }) / Double(t)
        }
        self.perClass = perClass
        fashionClassAccuracy = group(.fashionMNIST)
        animalClassAccuracy = group(.animalMNIST)
    }

    /// A human-readable table.
    public var table: String {
        func pct(_ x: Double) -> String { String(format: "%6.2f%%", 100 * x) }
        var s = "\(count) real scenes from the \(split) split (seed \(String(seed, radix: 16)))\n"
        s += "class accuracy        \(pct(classAccuracy))   (Fashion-MNIST \(pct(fashionClassAccuracy)), Animal-MNIST \(pct(animalClassAccuracy)))\n"
        s += "object colour         \(pct(objColorAccuracy))\n"
        s += "background colour     \(pct(bgColorAccuracy))\n"
        s += "all three right       \(pct(allCorrect))\n\n"
        s += "id  class         scenes  accuracy  most confused with\n"
        for r in perClass {
            s += String(format: "%2d  %@  %6d   %@  %@\n", r.id, r.name.padding(toLength: 12, withPad: " ", startingAt: 0),
                        r.count, pct(r.accuracy), r.mostConfusedWith ?? "-")
        }
        return s
    }

    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }
}

extension SceneDetector {
    /// Accuracies on scenes 0..<count of `sampler` (rendered on the fly, in parallel).
    public func evaluate(sampler: SceneSampler, count: Int) -> DetectorReport {
        let truth = (0..<count).map { i -> (Int, Int, Int) in
            let c = sampler.plan(i).caption
            return (c.classID, c.objColor, c.bgColor)
        }
        let preds = predict(count: count) { sampler.scene($0).image }
        return DetectorReport(split: sampler.split.rawValue, seed: sampler.seed, truth: truth, predictions: preds)
    }
}
