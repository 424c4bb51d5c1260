import Foundation
import Imaging

/// The report's metrics as pure functions of judgements, features and images, so each can be
/// checked on cases with known answers.
public enum Metrics {
    /// Fraction of predictions whose object class is one of `classes` (the concept detection rate, ACC).
    public static func detectionRate(_ preds: [Judgement], classes: Set<Int>) -> Double {
        fraction(preds.map { classes.contains($0.classID) })
    }

    /// Object-class, object-colour and background-colour accuracy against the scenes the prompts asked for.
    public static func accuracies(_ preds: [Judgement], _ prompts: [EvaluationPrompt])
        -> (object: Double, objColor: Double, bgColor: Double) {
        precondition(preds.count == prompts.count)
        return (fraction(zip(preds, prompts).map { $0.classID == $1.classID }),
                fraction(zip(preds, prompts).map { $0.objColor == $1.objColor }),
                fraction(zip(preds, prompts).map { $0.bgColor == $1.bgColor }))
    }

    /// Mean SSIM over image pairs (torchmetrics' definition per pair).
    public static func meanSSIM(_ a: [RGBImage], _ b: [RGBImage]) -> Double {
        precondition(a.count == b.count)
        return a.isEmpty ? 1 : zip(a, b).map { SSIM.mean($0, $1) }.reduce(0, +) / Double(a.count)
    }

    /// LPIPS-style perceptual distance on the detector's features: each feature vector scaled to unit length,
    /// then the squared distance, averaged over pairs (0 = same features, 4 = opposite; ReLU features keep it ≤ 2).
    public static func featureDistance(_ a: [[Float]], _ b: [[Float]]) -> Double {
        precondition(a.count == b.count)
        guard !a.isEmpty else { return 0 }
        func unit(_ v: [Float]) -> [Double] {
            let n = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            return n > 0 ? v.map { Double($0) / n } : v.map { _ in 0 }
        }
        return zip(a, b).map { x, y in zip(unit(x), unit(y)).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } }
            .reduce(0, +) / Double(a.count)
    }

    /// In-domain FID between two feature sets (needs at least two vectors each).
    public static func fid(_ a: [[Float]], _ b: [[Float]]) -> Double? {
        guard a.count >= 2, b.count >= 2 else { return nil }
        return Frechet.distance(Frechet.fit(a), Frechet.fit(b))
    }

    /// Object accuracy per class on `prompts` (nil for classes without prompts).
    public static func perClassAccuracy(_ preds: [Judgement], _ prompts: [EvaluationPrompt]) -> [Int: Double] {
        var hit: [Int: Int] = [:], count: [Int: Int] = [:]
        for (p, q) in zip(preds, prompts) {
            count[q.classID, default: 0] += 1
            if p.classID == q.classID { hit[q.classID, default: 0] += 1 }
        }
        return count.mapValues { _ in 0 }.merging(count.map { ($0.key, Double(hit[$0.key] ?? 0) / Double($0.value)) }) { $1 }
    }

    /// Wilson score interval (95% at z 1.96) of a rate measured as `rate` over `trials` samples: how far a
    /// detection rate or accuracy on a few dozen prompts can be from the model's true rate (1 of 32 → 0.006–0.157).
    public static func wilsonInterval(rate: Double, trials: Int, z: Double = 1.96) -> (lower: Double, upper: Double) {
        guard trials > 0 else { return (0, 1) }
        let n = Double(trials), p = (rate * n).rounded() / n, z2 = z * z
        let denom = 1 + z2 / n, centre = (p + z2 / (2 * n)) / denom
        let half = z * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot() / denom
        return (max(0, centre - half), min(1, centre + half))
    }

    /// Change of an accuracy measured twice on the same prompts and seeds (`before[i]`, `after[i]`: prompt i read
    /// correctly), with its 95% interval (Wald, for paired proportions): only the prompts that flip carry
    /// information, so the interval shrinks with the number of flips, not with the accuracies.
    public static func pairedChange(before: [Bool], after: [Bool], z: Double = 1.96) -> (change: Double, lower: Double, upper: Double) {
        precondition(before.count == after.count)
        guard !before.isEmpty else { return (0, -1, 1) }
        let n = Double(before.count)
        let gained = Double(zip(before, after).filter { !$0 && $1 }.count), lost = Double(zip(before, after).filter { $0 && !$1 }.count)
        let change = (gained - lost) / n
        let half = z * max(0, gained + lost - (gained - lost) * (gained - lost) / n).squareRoot() / n
        return (change, change - half, change + half)
    }

    static func fraction(_ ok: [Bool]) -> Double { ok.isEmpty ? 0 : Double(ok.filter { $0 }.count) / Double(ok.count) }
}
