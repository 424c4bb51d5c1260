import ArgumentParser
import BaseModel
import Detector
import Flux
import Foundation
import World

struct EvaluateBase: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate-base",
        abstract: "Measures the base model with the concept detector: generated vs real object accuracy, colours, held-out wording, in-domain FID.")

    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: "Model folder.") var model: String = BaseModelSpec.defaultModelPath
    @Option(help: "Detector weights.") var detector: String = SceneDetector.defaultPath
    @Option(help: "Samples per prompt set (held-in, held-out, real).") var samples: Int = 1000
    @Option(help: "Euler steps.") var steps: Int = 20
    @Option(help: "Classifier-free guidance scale (1 = off).") var guidance: Double = BaseModelSpec.defaultGuidance
    @Option(help: "Seed of prompts, colours and noise.") var seed: UInt64 = 0
    @Option(help: "Folder for report.json and a sample grid.") var out: String = "out/evaluate-base"
    @Flag(help: "Print the report as JSON on stdout.") var json = false

    func validate() throws {
        try precisionOption.validateFloatOnly()
        if samples < 20 { throw ValidationError("--samples must be ≥ 20 (one per class at least)") }
        if steps < 1 { throw ValidationError("--steps must be ≥ 1") }
        try checkGuidance(guidance)
    }

    func run() throws {
        try reportingErrors {
            precisionOption.apply()
            let transformer = FluxTransformer(weights: try FluxWeightLoader(path: model).load(as: Float.self))
            let gen = Generator(model: transformer, encoder: try PromptEncoder(), steps: steps, guidanceScale: guidance)
            let det = try SceneDetector(path: detector)
            try prepareOutputFolder(out)
            let bar = Progress(total: 2 * samples * steps, label: "evaluate-base")
            var offset = 0, last = ""
            let report = try BaseEvaluation.run(generator: gen, detector: det, samples: samples, seed: seed) { set, done, _ in
                if set != last { offset = set == "held-out" ? samples * steps : 0; last = set }
                bar.update(offset + done)
            }
            let data = try writeReport(report, to: (out as NSString).appendingPathComponent("report.json"))
            // A grid of the first 40 held-in prompts, for looking at.
            let prompts = (0..<40).map { BaseEvaluation.caption($0, seed: seed, wording: .train).text }
            let imgs = try gen.images(prompts: prompts, seeds: (0..<40).map { seed &+ UInt64($0) })
            try ImageGrid(columns: 10, scale: 3, gap: 2, labelLines: 3).write(imgs, labels: prompts,
                                                                             to: (out as NSString).appendingPathComponent("grid.png"))
            if json {
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(String(format: """
                object accuracy: generated %.3f vs real %.3f (ratio %.2f; floor 0.8, goal 0.9)
                colour accuracy: object %.3f, background %.3f (bar 0.9)
                held-out wording: object accuracy %.3f (ratio to held-in %.2f; bar 0.7)
                in-domain FID (detector features): generated vs real %.2f; real train vs real test %.2f
                """, report.generatedObjectAccuracy, report.realObjectAccuracy, report.generatedToRealRatio,
                             report.objectColorAccuracy, report.backgroundColorAccuracy, report.heldOutObjectAccuracy,
                             report.heldOutToHeldInRatio, report.inDomainFID, report.inDomainFIDRealTrainVsTest))
                if let p = report.textProbe {
                    print(String(format: "text encoder alone (nearest training-wording centroid): held-in %.3f, held-out %.3f (ratio %.2f)",
                                 p.heldInAccuracy, p.heldOutAccuracy, p.heldOutToHeldInRatio))
                }
                print("class            generated  real   held-out  text probe held-out")
                for r in report.perClass {
                    print(r.name.padding(toLength: 16, withPad: " ", startingAt: 0)
                          + String(format: " %.3f      %.3f  %.3f     %.3f", r.generated, r.real, r.heldOut,
                                   report.textProbe?.perClassHeldOut[r.id] ?? .nan))
                }
                print(report.meetsFloor ? "the bar is met" : "the bar is NOT met")
                print("report: \(out)/report.json")
            }
        }
    }
}
