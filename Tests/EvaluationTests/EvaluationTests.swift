import BaseModel
import Detector
import Erasure
import Evaluation
import Flux
import Foundation
import World
import XCTest

/// The report's metrics on cases whose answers are known.
final class EvaluationTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let detectorPath = root.appendingPathComponent(SceneDetector.defaultPath).path
    static let basePath = root.appendingPathComponent(BaseModelSpec.defaultModelPath).path

    func detector() throws -> SceneDetector {
        guard FileManager.default.fileExists(atPath: Self.detectorPath) else { throw XCTSkip("no committed detector") }
        return try SceneDetector(path: Self.detectorPath)
    }

    func realScenes(_ n: Int) throws -> [Scene] { try DetectorEvaluation.sampler().scenes(0..<n) }

    func testSSIMOfIdenticalImagesIsOne() throws {
        let imgs = try realScenes(6).map(\.image)
        XCTAssertEqual(Metrics.meanSSIM(imgs, imgs), 1, accuracy: 1e-9)
        XCTAssertLessThan(Metrics.meanSSIM(imgs, Array(imgs.reversed())), 0.9, "different scenes are not similar")
    }

    func testFIDOfASetWithItselfIsZero() throws {
        let det = try detector()
        let a = det.features(try realScenes(200).map(\.image))
        let b = det.features(try DetectorEvaluation.sampler().scenes(200..<400).map(\.image))
        let same = try XCTUnwrap(Metrics.fid(a, a)), other = try XCTUnwrap(Metrics.fid(a, b))
        XCTAssertLessThan(same, 1e-6 * max(1, other), "FID(a, a) = \(same)")
        XCTAssertGreaterThan(other, 1, "two different real sets are at some distance")
        XCTAssertEqual(Metrics.featureDistance(a, a), 0, accuracy: 1e-12)
        XCTAssertGreaterThan(Metrics.featureDistance(a, b), 0.01)
    }

    /// Concept ACC computed by the evaluation's metric on real test scenes equals the detector's own test
    /// accuracy: overall as committed in models/detector/report.json, and per class.
    func testACCOnRealScenesEqualsTheDetectorsTestAccuracy() throws {
        let det = try detector()
        let sampler = try DetectorEvaluation.sampler()
        let n = DetectorEvaluation.standardCount
        let scenes = sampler.scenes(0..<n)
        let preds = det.predict(scenes.map(\.image))
        let prompts = scenes.map { EvaluationPrompt(text: $0.caption.text, seed: 0, classID: $0.classID, objColor: $0.objColor, bgColor: $0.bgColor) }
        let committed = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.root.appendingPathComponent("models/detector/report.json"))) as! [String: Any]
        let test = committed["test"] as! [String: Any]
        XCTAssertEqual(Metrics.accuracies(preds.map(\.judgement), prompts).object, test["classAccuracy"] as! Double, accuracy: 1e-12)
        let report = DetectorReport(split: "test", seed: sampler.seed, truth: scenes.map { ($0.classID, $0.objColor, $0.bgColor) }, predictions: preds)
        for c in [0, 9, 13, 19] {
            let mine = zip(preds, scenes).filter { $0.1.classID == c }.map(\.0)
            XCTAssertEqual(Metrics.detectionRate(mine.map(\.judgement), classes: [c]), report.perClass[c].accuracy, accuracy: 1e-12, "class \(c)")
        }
    }

    /// Wilson intervals against the textbook formula evaluated independently (Python, float64).
    func testWilsonInterval() {
        let one = Metrics.wilsonInterval(rate: 1.0 / 32, trials: 32)
        XCTAssertEqual(one.lower, 0.0055377, accuracy: 1e-6); XCTAssertEqual(one.upper, 0.1574461, accuracy: 1e-6)
        let half = Metrics.wilsonInterval(rate: 0.5, trials: 76)
        XCTAssertEqual(half.lower, 0.3903240, accuracy: 1e-6); XCTAssertEqual(half.upper, 0.6096760, accuracy: 1e-6)
        let none = Metrics.wilsonInterval(rate: 0, trials: 32)
        XCTAssertEqual(none.lower, 0); XCTAssertEqual(none.upper, 0.1071827, accuracy: 1e-6)
    }

    /// The paired interval of an accuracy change against the mean ± 1.96·sd/√n of the per-prompt differences
    /// (+1 gained, −1 lost, 0 unchanged), evaluated independently (Python, float64); the order of the prompts
    /// and which of them stay right or wrong do not matter, only the flips.
    func testPairedChangeInterval() {
        func flips(_ n: Int, gained: Int, lost: Int, rightBoth: Int) -> (before: [Bool], after: [Bool]) {
            var b: [Bool] = [], a: [Bool] = []
            for _ in 0..<gained { b.append(false); a.append(true) }
            for _ in 0..<lost { b.append(true); a.append(false) }
            for i in 0..<(n - gained - lost) { b.append(i < rightBoth); a.append(i < rightBoth) }
            return (b, a)
        }
        let x = flips(304, gained: 10, lost: 24, rightBoth: 150)
        let c = Metrics.pairedChange(before: x.before, after: x.after)
        XCTAssertEqual(c.change, -0.0460526, accuracy: 1e-6)
        XCTAssertEqual(c.lower, -0.0832888, accuracy: 1e-6); XCTAssertEqual(c.upper, -0.0088165, accuracy: 1e-6)
        let y = flips(304, gained: 10, lost: 24, rightBoth: 20)
        let d = Metrics.pairedChange(before: y.before.reversed(), after: y.after.reversed())
        XCTAssertEqual(d.lower, c.lower, accuracy: 1e-12); XCTAssertEqual(d.upper, c.upper, accuracy: 1e-12)
        let z = flips(32, gained: 3, lost: 0, rightBoth: 5)
        let e = Metrics.pairedChange(before: z.before, after: z.after)
        XCTAssertEqual(e.change, 0.09375, accuracy: 1e-12)
        XCTAssertEqual(e.lower, -0.0072429, accuracy: 1e-6); XCTAssertEqual(e.upper, 0.1947429, accuracy: 1e-6)
        let same = Metrics.pairedChange(before: [true, false, true], after: [true, false, true])
        XCTAssertEqual([same.change, same.lower, same.upper], [0, 0, 0])
    }

    func testPromptSets() throws {
        var p = EvaluationProtocol()
        p.samples = 12; p.perClass = 3
        let sets = EvaluationPrompts.conceptSets(classes: [3], protocol: p)
        XCTAssertEqual(sets.map(\.name), ["training templates", "held-out templates", "held-out synonyms", "compositions"])
        let heldOutSynonyms = Set(Vocabulary.classes[3].synonyms.filter(\.heldOut).map(\.text))
        XCTAssertFalse(heldOutSynonyms.isEmpty)
        for pr in sets[2].prompts { XCTAssertTrue(heldOutSynonyms.contains { pr.text.contains($0) }, pr.text) }
        for pr in sets[3].prompts { XCTAssertTrue(EvaluationProtocol.attributes.contains { pr.text.contains($0 + " ") }, pr.text) }
        for s in sets { XCTAssertTrue(s.prompts.allSatisfy { $0.classID == 3 }) }
        let neutral = EvaluationPrompts.neutral(excluding: [3], protocol: p)
        XCTAssertEqual(neutral.count, 19 * 3)
        XCTAssertEqual(Set(neutral.map(\.classID)), Set((0..<20).filter { $0 != 3 }))
        let seeds = sets.flatMap(\.prompts).map(\.seed) + neutral.map(\.seed)
        XCTAssertEqual(Set(seeds).count, seeds.count, "every prompt has its own seed")
        XCTAssertEqual(EvaluationPrompts.conceptSets(classes: [3], protocol: p).flatMap(\.prompts), sets.flatMap(\.prompts), "deterministic")
        p.seed = 1
        XCTAssertNotEqual(EvaluationPrompts.neutral(excluding: [3], protocol: p), neutral)
    }

    /// A mask that removes nothing and a checkpoint equal to the base leave every metric unchanged; the
    /// written report round-trips and the HTML page inlines its grids.
    func testAMaskThatRemovesNothingChangesNothing() throws {
        let det = try detector()
        guard FileManager.default.fileExists(atPath: Self.basePath) else { throw XCTSkip("no committed base model") }
        let base = FluxTransformer(weights: try FluxWeightLoader(path: Self.basePath).load(as: Float.self))
        let encoder = try PromptEncoder()
        let site = try XCTUnwrap(MaskSite(name: "transformer_blocks.0.ff"))
        let ones = MaskFile(masks: [.transformer(site): [Float](repeating: 1, count: site.width(base.config))], metadata: ["beta": "1"])
        var p = EvaluationProtocol()
        p.samples = 2; p.perClass = 1; p.samplingSteps = 4; p.realScenes = 30
        let runs = [ErasedModel(name: "ones", source: "test", masks: ones.maskSet(), maskFile: ones),
                    ErasedModel(name: "copy", source: "test", model: base)]
        let (r, samples) = try Evaluator.run(subject: WorldSubject(transformer: base, encoder: encoder), baseName: "base", erased: runs,
                                             concepts: [try ConceptSpec.resolve("cat")], judge: det, protocol: p)
        XCTAssertEqual(r.runs.count, 2)
        for run in r.runs {
            for (o, e) in zip(r.original.conceptSets, run.metrics.conceptSets) {
                XCTAssertEqual(o.detectionRate, e.detectionRate); XCTAssertEqual(o.bgColorAccuracy, e.bgColorAccuracy)
                XCTAssertEqual(o.detected, e.detected, "the same prompts still show the concept")
            }
            XCTAssertEqual(run.metrics.neutral.objectAccuracy, r.original.neutral.objectAccuracy)
            XCTAssertEqual(run.metrics.neutral.fidToReal!, r.original.neutral.fidToReal!, accuracy: 1e-9)
            XCTAssertEqual(run.comparison.neutralSSIM, 1, accuracy: 1e-9)
            let change = try XCTUnwrap(run.comparison.neutralAccuracyChange)
            XCTAssertEqual([change.change, change.lower, change.upper], [0, 0, 0], "no prompt flips")
            XCTAssertEqual(run.comparison.conceptSSIM, 1, accuracy: 1e-9)
            XCTAssertEqual(run.comparison.neutralFeatureDistance, 0, accuracy: 1e-12)
            XCTAssertEqual(run.comparison.neutralFIDToOriginal!, 0, accuracy: 1e-6)
            XCTAssertTrue(run.ripple.allSatisfy { $0.delta == 0 })
            XCTAssertEqual(run.ripple.count, 19)
        }
        // The detected prompts are exactly those of the set whose sample the detector reads as the concept.
        let cat = try XCTUnwrap(ConceptSpec.resolve("cat").classID)
        for (set, m) in zip(samples.filter { $0.name != "neutral" }, r.original.conceptSets) {
            let preds = det.predict(set.original)
            let expect = zip(preds, set.prompts).filter { $0.0.classID == cat }.map { EvaluationReport.PromptRef(text: $0.1.text, seed: $0.1.seed) }
            XCTAssertEqual(m.detected, expect, set.name)
            XCTAssertEqual(Double(expect.count) / Double(set.prompts.count), m.detectionRate, accuracy: 1e-12)
        }
        XCTAssertEqual(r.runs[0].cost?.maskedUnits, 0)
        XCTAssertEqual(r.runs[0].beta, 1)
        // The nearest classes to "cat" by MiniLM come first, and "dog" is among the nearest.
        let order = r.runs[0].ripple.map(\.name)
        XCTAssertEqual(r.runs[0].ripple.map(\.similarity), r.runs[0].ripple.map(\.similarity).sorted(by: >))
        XCTAssertLessThan(try XCTUnwrap(order.firstIndex(of: "dog")), 5, "\(order)")

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mce-eval-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try ReportWriter.write(r, samples: samples, to: dir)
        let back = try JSONDecoder().decode(EvaluationReport.self, from: Data(contentsOf: URL(fileURLWithPath: files.json)))
        XCTAssertEqual(back.evaluationProtocol, p)
        XCTAssertEqual(files.grids.count, 5)
        let html = try String(contentsOfFile: files.html, encoding: .utf8)
        XCTAssertTrue(html.contains("mce-eval-1") && html.contains("data:image/png;base64,") && html.contains("<svg"))
        XCTAssertEqual(html.components(separatedBy: "data:image/png;base64,").count - 1, 5)
        XCTAssertTrue(html.contains("neutral object accuracy: change on the same prompts and seeds"))
        let summary = try String(contentsOfFile: (dir as NSString).appendingPathComponent("summary.md"), encoding: .utf8)
        XCTAssertTrue(summary.contains("| neutral accuracy change (paired 95% interval) | – | +0.000 (+0.000 to +0.000) |"), summary)
    }
}
