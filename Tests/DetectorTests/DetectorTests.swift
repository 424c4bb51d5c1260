import BLAS
import Foundation
import XCTest
@testable import Detector
import World

/// Repository root (this file is Tests/DetectorTests/DetectorTests.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The real data sets, loaded once; a missing data set fails the test (it is not skipped).
enum Samplers {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [String: SceneSampler] = [:]

    static func get(_ split: Split, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) throws -> SceneSampler {
        lock.lock()
        defer { lock.unlock() }
        let key = "\(split.rawValue)-\(seed)"
        if let s = cache[key] { return s }
        do {
            let s = try SceneSampler.load(split: split, seed: seed)
            cache[key] = s
            return s
        } catch {
            XCTFail("The detector tests need the real data sets (data directory \(DataPaths.root())); run scripts/fetch_datasets.sh: \(error)", file: file, line: line)
            throw error
        }
    }
}

func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("mce-detector-\(UUID().uuidString)-\(name)").path
}

final class DetectorTests: XCTestCase {
    /// A small, fast configuration on the real 32×32 scenes.
    static let tinyConfig = DetectorConfig(layers: [8, 0, 16, 0, 16, 0], hidden: 32)

    func tinyOptions() -> DetectorTrainingOptions {
        var o = DetectorTrainingOptions()
        o.config = Self.tinyConfig
        o.steps = 60; o.batch = 32; o.lr = 3e-3; o.warmup = 5; o.seed = 7
        return o
    }

    func testLossDecreases() throws {
        let t = try DetectorTrainer(options: tinyOptions(), sampler: try Samplers.get(.train, seed: 7))
        var losses: [Double] = []
        for _ in 0..<60 { losses.append(t.trainStep().loss) }
        let first = losses[0..<5].reduce(0, +) / 5, last = losses[55..<60].reduce(0, +) / 5
        XCTAssertLessThan(last, 0.85 * first, "losses \(losses)")
        // Chance level of the three heads is ln 20 + 2 ln 12 ≈ 7.96.
        XCTAssertLessThan(last, log(20) + 2 * log(12) - 0.8, "losses \(losses)")
        XCTAssertEqual(t.step, 60)
    }

    func testDeterministicAndResumable() throws {
        let sampler = try Samplers.get(.train, seed: 7)
        let a = try DetectorTrainer(options: tinyOptions(), sampler: sampler)
        let b = try DetectorTrainer(options: tinyOptions(), sampler: sampler)
        var la: [Double] = [], lb: [Double] = []
        for _ in 0..<4 { la.append(a.trainStep().loss) }
        for _ in 0..<2 { lb.append(b.trainStep().loss) }
        let path = temporaryPath("ckpt.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try b.saveCheckpoint(to: path)
        let c = try DetectorTrainer(options: tinyOptions(), sampler: sampler)
        try c.loadCheckpoint(from: path)
        XCTAssertEqual(c.step, 2)
        for _ in 0..<2 { lb.append(c.trainStep().loss) }
        XCTAssertEqual(la, lb, "same seed, same losses, also across a checkpoint")
        XCTAssertEqual(a.net.params.array, c.net.params.array)

        var other = tinyOptions()
        other.lr = 1e-3
        let d = try DetectorTrainer(options: other, sampler: sampler)
        XCTAssertThrowsError(try d.loadCheckpoint(from: path), "a checkpoint of other options is refused")
    }

    func testSaveLoadRoundTrip() throws {
        let det = try SceneDetector(config: Self.tinyConfig, seed: 11)
        let scenes = try Samplers.get(.test, seed: 3).scenes(0..<13).map(\.image)
        let path = temporaryPath("detector.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try det.save(to: path, metadata: ["note": "test"])
        let back = try SceneDetector(path: path)
        XCTAssertEqual(back.config, det.config)
        XCTAssertEqual(back.metadata["note"], "test")
        XCTAssertEqual(back.net.params.array, det.net.params.array)
        XCTAssertEqual(back.predict(scenes), det.predict(scenes))
        XCTAssertEqual(back.features(scenes), det.features(scenes))
        XCTAssertThrowsError(try SceneDetector(path: temporaryPath("missing.safetensors")))
    }

    func testBatchingDoesNotChangeResults() throws {
        let det = try SceneDetector(config: Self.tinyConfig, seed: 5)
        let scenes = try Samplers.get(.test, seed: 3).scenes(0..<70).map(\.image)
        // Shards depend on the batch, not on the workers; a different batch only changes BLAS's summation
        // order in the last bits.
        let all = det.predict(scenes)
        XCTAssertEqual(all.count, 70)
        for k in [0, 1, 33, 69] {
            let one = det.predict([scenes[k]])[0]
            XCTAssertEqual(one.classID, all[k].classID)
            XCTAssertLessThan(zip(one.logits, all[k].logits).map { abs($0 - $1) }.max()!, 1e-4)
        }
        XCTAssertEqual(det.predict(scenes), all, "same batch, same bits")
        let f = det.features(scenes)
        XCTAssertEqual(f.count, 70)
        XCTAssertEqual(f[0].count, det.featureSize)
        XCTAssertLessThan(zip(f[69], det.features([scenes[69]])[0]).map { abs($0 - $1) }.max()!, 1e-4)
        for p in all {
            XCTAssertEqual(p.classProbabilities.count, 20)
            XCTAssertEqual(p.objColorProbabilities.count, 12)
            XCTAssertEqual(p.classProbabilities.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(p.classID, p.classProbabilities.indices.max { p.classProbabilities[$0] < p.classProbabilities[$1] })
        }
        XCTAssertEqual(det.predict([]), [])
    }

    func testReport() {
        let truth = [(0, 1, 2), (0, 1, 2), (11, 3, 4), (19, 5, 6)]
        func pred(_ c: Int, _ o: Int, _ b: Int) -> DetectorPrediction {
            DetectorPrediction(classID: c, objColor: o, bgColor: b, classProbabilities: [], objColorProbabilities: [], bgColorProbabilities: [], logits: [])
        }
        let r = DetectorReport(split: "test", seed: 1, truth: truth, predictions: [pred(0, 1, 2), pred(6, 1, 2), pred(11, 3, 0), pred(19, 5, 6)])
        XCTAssertEqual(r.classAccuracy, 0.75)
        XCTAssertEqual(r.objColorAccuracy, 1)
        XCTAssertEqual(r.bgColorAccuracy, 0.75)
        XCTAssertEqual(r.allCorrect, 0.5)
        XCTAssertEqual(r.perClass[0].accuracy, 0.5)
        XCTAssertEqual(r.perClass[0].mostConfusedWith, "shirt")
        XCTAssertEqual(r.fashionClassAccuracy, 0.5)
        XCTAssertEqual(r.animalClassAccuracy, 1)
        XCTAssertEqual(r.confusion[0][6], 1)
        XCTAssertNoThrow(try r.json())
        XCTAssertTrue(r.table.contains("t-shirt"))
    }

    /// The committed detector is the measuring instrument of every later metric: it must meet its bar on
    /// real test scenes it never saw.
    func testCommittedDetectorMeetsTheBar() throws {
        let path = repositoryRoot.appendingPathComponent(SceneDetector.defaultPath).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("no committed detector at \(path)")
        }
        let det = try SceneDetector(path: path)
        XCTAssertEqual(det.config, .standard)
        let r = det.evaluate(sampler: try DetectorEvaluation.sampler(), count: 1000)
        XCTAssertGreaterThanOrEqual(r.classAccuracy, 0.88, r.table)
        XCTAssertGreaterThanOrEqual(r.objColorAccuracy, 0.98, r.table)
        XCTAssertGreaterThanOrEqual(r.bgColorAccuracy, 0.98, r.table)
    }
}
