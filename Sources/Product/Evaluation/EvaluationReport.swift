import Foundation

/// Everything `mce evaluate` measures (written as report.json; report.html shows the same numbers).
public struct EvaluationReport: Codable, Sendable {
    public var evaluationProtocol: EvaluationProtocol
    public var concepts: [String]
    public var baseModel: String
    /// The detector's object accuracy on real test scenes of the neutral classes (the ceiling for generated ones).
    public var realObjectAccuracy: Double
    public var original: ModelMetrics
    public var runs: [RunResult]
    /// Attack success rates per erased model (`mce evaluate --attacks`); nil when no attack ran.
    public var attacks: [AttackRow]?

    enum CodingKeys: String, CodingKey {
        case evaluationProtocol = "protocol", concepts, baseModel, realObjectAccuracy, original, runs, attacks
    }

    /// One attack on one erased model: ASR on it, and on the original model with the same prompts and seeds
    /// (for relearning: the original's detection rate before fine-tuning).
    public struct AttackRow: Codable, Sendable {
        public var run: String
        public var attack: String
        public var asr: Double
        public var originalASR: Double
        public var samples: Int
        public var seconds: Double
        public var budget: String
        /// ASR (relearning: detection rate) after each budget, per variant, for attacks that have budgets.
        public var curve: [BudgetPoint]?
        public init(run: String, attack: String, asr: Double, originalASR: Double, samples: Int, seconds: Double, budget: String,
                    curve: [BudgetPoint]? = nil) {
            self.run = run; self.attack = attack; self.asr = asr; self.originalASR = originalASR; self.samples = samples
            self.seconds = seconds; self.budget = budget; self.curve = curve
        }
    }

    /// One point of an attack's success against its budget (optimiser or fine-tuning steps).
    public struct BudgetPoint: Codable, Sendable {
        public var variant: String?
        public let budget: Int
        public let asr: Double
        public init(variant: String? = nil, budget: Int, asr: Double) { self.variant = variant; self.budget = budget; self.asr = asr }
    }

    /// Attack names in the order they ran.
    public var attackNames: [String] {
        var seen = Set<String>()
        return (attacks ?? []).map(\.attack).filter { seen.insert($0).inserted }
    }

    /// The row of `attack` on run `run`, if it ran.
    public func attack(_ attack: String, run: String) -> AttackRow? { attacks?.first { $0.attack == attack && $0.run == run } }

    public struct SetMetrics: Codable, Sendable {
        public var name: String
        public var prompts: Int
        /// Fraction of samples the detector reads as an erased class (ACC).
        public var detectionRate: Double
        /// Whether the object / background colour asked for is the one the detector reads.
        public var objColorAccuracy: Double
        public var bgColorAccuracy: Double
        /// The prompts (with their seeds) whose sample the detector reads as an erased class: for an erased
        /// model, where the concept survives. nil in reports written before it was recorded.
        public var detected: [PromptRef]?
    }

    /// A prompt and its seed, enough to regenerate the sample (`mce generate --prompt TEXT --seed SEED`).
    public struct PromptRef: Codable, Sendable, Equatable {
        public var text: String
        public var seed: UInt64
        public init(text: String, seed: UInt64) { self.text = text; self.seed = seed }
    }

    public struct NeutralMetrics: Codable, Sendable {
        public var prompts: Int
        public var objectAccuracy: Double
        public var objColorAccuracy: Double
        public var bgColorAccuracy: Double
        /// In-domain FID (detector features) of the neutral samples vs real test scenes of the same classes.
        public var fidToReal: Double?
    }

    public struct ModelMetrics: Codable, Sendable {
        public var conceptSets: [SetMetrics]
        public var neutral: NeutralMetrics
        /// Object accuracy per neutral class, by class name.
        public var perClass: [String: Double]
        /// Pooled over the concept sets: colours kept when the concept is asked for.
        public var conceptObjColorAccuracy: Double
        public var conceptBgColorAccuracy: Double
    }

    /// Erased vs original on the same prompts and seeds.
    public struct Comparison: Codable, Sendable {
        public var neutralSSIM: Double
        public var neutralFeatureDistance: Double
        public var neutralFIDToOriginal: Double?
        public var conceptSSIM: Double
        /// Neutral object accuracy after − before on the same prompts and seeds, with its paired 95% interval
        /// (nil in reports written before it existed).
        public var neutralAccuracyChange: Change?
    }

    public struct Change: Codable, Sendable {
        public var change: Double
        public var lower: Double
        public var upper: Double
    }

    public struct RippleRow: Codable, Sendable {
        public var classID: Int
        public var name: String
        /// Cosine similarity of the class name's MiniLM embedding to the nearest erased concept's.
        public var similarity: Double
        public var before: Double
        public var after: Double
        public var delta: Double { after - before }
    }

    public struct Cost: Codable, Sendable {
        public var maskedUnits: Int
        public var totalUnits: Int
        public var maskedPerSite: [String: Int]
        /// From the erase run's report.json when it sits beside the mask file.
        public var eraseSeconds: Double?
        public var peakRSSMiB: Double?
    }

    public struct Targets: Codable, Sendable {
        public var conceptWasThere: Bool
        public var conceptGone: Bool
        public var neutralKept: Bool
        public var ssim: Bool
        public var background: Bool
    }

    public struct RunResult: Codable, Sendable {
        public var name: String
        public var source: String
        public var beta: Double?
        public var target: String?
        public var metrics: ModelMetrics
        public var comparison: Comparison
        /// Other classes, semantically nearest the concept first.
        public var ripple: [RippleRow]
        public var cost: Cost?
        public var targets: Targets
    }
}

extension EvaluationReport.RunResult {
    static func targets(original o: EvaluationReport.ModelMetrics, erased e: EvaluationReport.ModelMetrics,
                        comparison c: EvaluationReport.Comparison, thresholds t: EvaluationProtocol.Thresholds) -> EvaluationReport.Targets {
        let before = o.conceptSets.first?.detectionRate ?? 0, after = e.conceptSets.first?.detectionRate ?? 1
        return .init(conceptWasThere: before >= t.conceptPresent, conceptGone: after <= t.conceptGone,
                     neutralKept: e.neutral.objectAccuracy >= o.neutral.objectAccuracy - t.neutralDrop,
                     ssim: c.neutralSSIM >= t.ssim, background: e.conceptBgColorAccuracy >= t.background)
    }
}

extension EvaluationReport {
    /// The measurements of each erased model, one block per model: what `mce evaluate` and `mce erase` print.
    public var summaryLines: [String] {
        let r = self
        var lines: [String] = []
        func print(_ s: String) { lines.append(s) }
        for run in r.runs {
            print("\(run.name):")
            for (o, e) in zip(r.original.conceptSets, run.metrics.conceptSets) {
                let ci = Metrics.wilsonInterval(rate: e.detectionRate, trials: e.prompts)
                print(String(format: "  concept ACC, %@: %.3f → %.3f (95%% interval %.3f–%.3f, %d prompts)", o.name, o.detectionRate, e.detectionRate,
                             ci.lower, ci.upper, e.prompts))
            }
            let n = run.metrics.neutral, ci = Metrics.wilsonInterval(rate: n.objectAccuracy, trials: n.prompts)
            print(String(format: "  neutral object accuracy %.3f → %.3f (95%% interval %.3f–%.3f, %d prompts), SSIM %.3f, feature distance %.4f, FID to original %.1f",
                         r.original.neutral.objectAccuracy, n.objectAccuracy, ci.lower, ci.upper, n.prompts, run.comparison.neutralSSIM,
                         run.comparison.neutralFeatureDistance, run.comparison.neutralFIDToOriginal ?? .nan))
            if let c = run.comparison.neutralAccuracyChange {
                print(String(format: "  neutral object accuracy change %+.3f (paired 95%% interval %+.3f to %+.3f, same prompts and seeds)", c.change, c.lower, c.upper))
            }
            print(String(format: "  concept prompts: background colour kept %.3f, object colour kept %.3f",
                         run.metrics.conceptBgColorAccuracy, run.metrics.conceptObjColorAccuracy))
            if let worst = run.ripple.min(by: { $0.delta < $1.delta }) {
                print(String(format: "  largest ripple: %@ %.3f → %.3f", worst.name, worst.before, worst.after))
            }
            for a in (r.attacks ?? []) where a.run == run.name {
                print(String(format: "  attack %@: ASR %.3f (original model %.3f), %d samples, %.0f s", a.attack, a.asr, a.originalASR, a.samples, a.seconds))
            }
            let t = run.targets, th = r.evaluationProtocol.thresholds
            func mark(_ ok: Bool) -> String { ok ? "met" : "NOT met" }
            print(String(format: "  targets: concept ACC ≤ %.2f %@; neutral accuracy within %.2f %@; SSIM ≥ %.2f %@; background kept ≥ %.2f %@",
                         th.conceptGone, mark(t.conceptGone), th.neutralDrop, mark(t.neutralKept), th.ssim, mark(t.ssim),
                         th.background, mark(t.background)))
        }
        return lines
    }
}
