import ArgumentParser
import Attacks
import BaseModel
import BLAS
import Detector
import Erasure
import Evaluation
import Flux
import Foundation
import World

struct Attack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tries to bring an erased concept back: paraphrases, Ring-A-Bell prompts, a white-box embedding attack, relearning; reports the attack success rate.",
        discussion: """
        ASR = share of attack samples the detector reads as the erased concept; the same prompts and seeds on the \
        original model are reported next to it. Writes OUT/attack.json and one PNG grid per attack (original above \
        erased).
        """)

    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: "Base (original) model.") var model: String = BaseModelSpec.defaultModelPath
    @Option(help: "Mask file, or the output folder of `mce erase`.") var masks: String?
    @Option(help: "A baked (erased) checkpoint.") var erased: String?
    @Option(name: .long, help: "Erased concept (repeatable; default: the mask file's concept).") var concept: [String] = []
    @Option(help: "Attack: paraphrase, ring-a-bell, embedding, relearning or all.") var attack: String = "all"
    @Option(help: "Paraphrase prompts.") var paraphrasePrompts: Int = AttackSettings().paraphrasePrompts
    @Option(help: "Ring-A-Bell: generations of each genetic search.") var generations: Int = RingABell.Options().generations
    @Option(help: "Ring-A-Bell: population of each search.") var population: Int = RingABell.Options().population
    @Option(help: "Ring-A-Bell: searches per prompt length (K = 16 and 38).") var runs: Int = AttackSettings().ringABellRuns
    @Option(help: "Ring-A-Bell: strength η of the concept direction.") var eta: Double = RingABell.Options().eta
    @Option(help: "Ring-A-Bell: seeds sampled per found prompt.") var samplesPerPrompt: Int = AttackSettings().samplesPerPrompt
    @Option(help: "Embedding attack: continuous tokens optimised in place of 'object'.") var embeddingTokens: Int = EmbeddingAttack.Options().tokens
    @Option(help: "Embedding attack: optimiser-step budgets at which ASR is read, comma-separated.") var embeddingBudgets: String = EmbeddingAttack.Options().checkpoints.map(String.init).joined(separator: ",")
    @Option(help: "Relearning attack: real images of the concept fine-tuned on (k).") var relearnImages: Int = RelearningAttack.Options().images
    @Option(help: "Relearning attack: fine-tuning-step budgets at which the detection rate is read, comma-separated.") var relearnBudgets: String = RelearningAttack.Options().checkpoints.map(String.init).joined(separator: ",")
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Euler steps.") var steps: Int = BaseModelSpec.defaultSteps
    @Option(help: "Classifier-free guidance scale.") var guidance: Double = BaseModelSpec.defaultGuidance
    @Option(help: "Detector weights.") var detector: String = SceneDetector.defaultPath
    @Option(help: "Output folder.") var out: String = "out/attack"

    func validate() throws {
        try precisionOption.validateFloatOnly()
        if (masks == nil) == (erased == nil) { throw ValidationError("give exactly one of --masks FILE and --erased PATH") }
        if !(attack == "all" || AttackName(rawValue: attack) != nil) {
            throw ValidationError("--attack must be all or one of \(AttackName.allCases.map(\.rawValue).joined(separator: ", ")), got '\(attack)'")
        }
        if paraphrasePrompts < 1 || generations < 1 || population < 8 || runs < 1 || samplesPerPrompt < 1 || steps < 1 {
            throw ValidationError("--paraphrase-prompts, --generations, --runs, --samples-per-prompt, --steps must be ≥ 1, --population ≥ 8")
        }
        if !(eta >= 0) { throw ValidationError("--eta must be ≥ 0") }
        if embeddingTokens < 1 || relearnImages < 1 { throw ValidationError("--embedding-tokens and --relearn-images must be ≥ 1") }
        try checkGuidance(guidance)
    }

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            guard FileManager.default.fileExists(atPath: detector) else { throw CLIError("--detector: \(detector) not found") }
            let base = FluxTransformer(weights: try FluxWeightLoader(path: model).load(as: Float.self))
            let hash = try modelHash(model)
            let encoder = try PromptEncoder()
            let target = try masks.map { try ErasedModel.load($0, as: .masks, base: base, baseHash: hash, encoder: encoder, option: "--masks", log: log) }
                ?? ErasedModel.load(erased!, as: .checkpoint, base: base, baseHash: hash, encoder: encoder, option: "--erased", log: log)
            let concepts = try Evaluate.worldConcepts(concept, recordedIn: [target])
            var s = AttackSettings()
            s.paraphrasePrompts = paraphrasePrompts; s.ringABellRuns = runs; s.samplesPerPrompt = samplesPerPrompt
            s.ringABell.generations = generations; s.ringABell.population = population; s.ringABell.eta = eta
            s.seed = seed; s.steps = steps; s.guidance = guidance
            s.embedding.tokens = embeddingTokens
            s.embedding.checkpoints = try budgets(embeddingBudgets, option: "--embedding-budgets")
            s.relearning.images = relearnImages
            s.relearning.checkpoints = try budgets(relearnBudgets, option: "--relearn-budgets")
            let det = try SceneDetector(path: detector)
            try prepareOutputFolder(out)
            let names = attack == "all" ? AttackName.allCases : [AttackName(rawValue: attack)!]
            var reports: [AttackReport] = []
            var found: [RingABell.Found]? = nil
            for name in names {
                log("attack \(name.rawValue) on \(target.name)…")
                let r = try AttackRunner.run([name], subject: WorldSubject(transformer: base, encoder: encoder), erased: target,
                                             concepts: concepts, judge: det, settings: s, ringABellFound: &found) { log($0) }[0]
                reports.append(r.report)
                let k = min(16, r.original.count)
                if k > 0 {
                    try ImageGrid(columns: k, scale: 3, gap: 2, labelLines: 0).write(Array(r.original.prefix(k)) + Array(r.erased.prefix(k)),
                                                                                  to: (out as NSString).appendingPathComponent("grid-\(name.rawValue).png"))
                }
                print(String(format: "%@: ASR %.3f on %@ (original model %.3f), %d samples, %.0f s", name.rawValue, r.report.asr, target.name,
                             r.report.originalASR, r.report.samples, r.report.seconds))
                for p in r.report.curve ?? [] {
                    print(String(format: "  %@budget %d: %.3f", p.variant.map { "\($0), " } ?? "", p.budget, p.asr))
                }
            }
            let path = (out as NSString).appendingPathComponent("attack.json")
            try writeReport(reports, to: path)
            print("report: \(path)")
        }
    }
}

/// A comma-separated list of budgets (non-negative integers), e.g. "0,10,20,30".
func budgets(_ text: String, option: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 }) else {
        throw CLIError("\(option): expected comma-separated non-negative integers like 0,10,20, got '\(text)'")
    }
    return Array(Set(values)).sorted()
}
