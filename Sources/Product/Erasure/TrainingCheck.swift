import BLAS
import Flux

/// How a run's binarised masks do on that run's own training prompts, each with its first-epoch noise: the
/// objective's terms with the final binary masks (not the relaxed draws the loss history shows), and which
/// prompts the masks break.
///
/// Why: with a constant learning rate a run now and then closes units that wreck a few training prompts, and
/// a hard-concrete unit pushed far below zero no longer gets a gradient to reopen it, so the damage stays to
/// the end (on "ankle boot" with γ 3 and λ > 0.5, seed 0 of six: four of its ten batches kept losses of
/// 0.3–0.5 against ≤ 0.03 on the other seeds, and its mask missed two targets). The check sees this from the
/// training prompts alone, so `mce erase` can train again with the next seed (`--retries`).
public struct TrainingCheck: Codable, Sendable, Equatable {
    public struct Item: Codable, Sendable, Equatable {
        public let prompt: String
        public let isConcept: Bool
        /// Mean squared error of the masked sample to its target (concept) or to its original sample (neutral).
        public let loss: Double
        /// Concept prompts: the same error of the original model's sample (where erasing starts); 0 for neutral ones.
        public let before: Double
        public let broken: Bool
    }
    public let seed: UInt64
    public let items: [Item]
    /// Mean loss of the concept prompts, of the neutral prompts, the text-preservation term (γ included; nil
    /// without one) and the objective, erase + β·preserve + text.
    public let erase: Double, preserve: Double, textPreserve: Double?, objective: Double
    /// An item is broken when its loss exceeds this, `brokenFactor` × the concept prompts' mean distance to
    /// their targets before erasing: a neutral sample moved as far as erasing moves a concept sample, or a
    /// concept sample that ends farther from its target than where it started and than an average one started.
    public let brokenAbove: Double
    public var brokenCount: Int { items.filter(\.broken).count }

    /// Order of preference between runs: fewer broken prompts, then the lower objective, then the earlier run.
    public func isBetter(than other: TrainingCheck) -> Bool {
        (brokenCount, objective) < (other.brokenCount, other.objective)
    }
}

extension Eraser {
    /// Sampler steps the check runs (its progress total): the targets (cached after training), the concept
    /// prompts' original samples, and every training prompt with the binary masks.
    public var checkWork: Int {
        (2 * pool.count + pool.filter(\.isConcept).count) * options.samplingSteps
    }

    /// The check of binary `masks` (transformer and text-encoder sites) on this run's
    /// training prompts (mask methods). `brokenFactor` scales the threshold (see `TrainingCheck.brokenAbove`).
    public func check(masks: [Site: [Float]], brokenFactor: Double = 1,
                      progress: ((Int, Int) -> Void)? = nil) throws -> TrainingCheck {
        guard options.method.learnsMasks else { throw ErasureError.badArgument("the training check is for mask methods") }
        guard brokenFactor >= 0, brokenFactor.isFinite else { throw ErasureError.badArgument("--broken-factor must be ≥ 0 and finite, got \(brokenFactor)") }
        let set = Self.maskSet(masks), textMasks = masks.textLayers
        let chosen = pool.map { (item: $0, epoch: 0) }
        let concepts = chosen.filter(\.item.isConcept)
        let total = checkWork
        var done = 0
        let targets = try originalSamples(targetRequests(chosen)) { d, _ in progress?(done + d, total) }
        done += chosen.count * options.samplingSteps
        let originals = try originalSamples(concepts.map { ($0.item.prompt, noiseSeed($0.item, epoch: 0)) }) { d, _ in progress?(done + d, total) }
        done += concepts.count * options.samplingSteps
        var masked: [[Float]] = []
        for start in stride(from: 0, to: chosen.count, by: options.batch) {
            let part = Array(chosen[start..<min(start + options.batch, chosen.count)])
            let prompts = part.map(\.item.prompt)
            let cond = textLayers.isEmpty ? try conditioning(prompts, guided: guided)
                                           : try maskedConditioning(prompts, guided: guided, masks: textMasks).cond
            let sampler = CheckpointedSampler(transformer: trained, cond: cond, schedule: schedule, masks: set, guidanceScale: options.guidance)
            let x = try sampler.sample(start: startNoise(part)).array
            masked += (0..<part.count).map { Array(x[$0 * perSample..<($0 + 1) * perSample]) }
            done += part.count * options.samplingSteps
            progress?(done, total)
        }
        func mse(_ a: [Float], _ b: [Float]) -> Double {
            zip(a, b).reduce(0) { s, p in let e = Double(p.0) - Double(p.1); return s + e * e } / Double(a.count)
        }
        func mean(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.reduce(0, +) / Double(xs.count) }
        // Each concept item's distance before erasing (`originals` are the concept items' samples, in order).
        var nextOriginal = originals.makeIterator()
        let before = chosen.indices.map { i in chosen[i].item.isConcept ? mse(nextOriginal.next()!, targets[i]) : 0 }
        let reference = brokenFactor * mean(chosen.indices.filter { chosen[$0].item.isConcept }.map { before[$0] })
        let items = chosen.enumerated().map { i, c -> TrainingCheck.Item in
            let loss = mse(masked[i], targets[i])
            return TrainingCheck.Item(prompt: c.item.prompt, isConcept: c.item.isConcept, loss: loss, before: before[i],
                                      broken: loss > reference && loss > before[i])
        }
        let erase = mean(items.filter(\.isConcept).map(\.loss)), preserve = mean(items.filter { !$0.isConcept }.map(\.loss))
        let text = options.effectiveTextPreserve > 0 && !textLayers.isEmpty ? try textPreservation(masks: textMasks).loss : nil
        return TrainingCheck(seed: options.seed, items: items, erase: erase, preserve: preserve, textPreserve: text,
                             objective: erase + options.beta * preserve + (text ?? 0), brokenAbove: reference)
    }
}
