import BaseModel
import BLAS
import Flux
import Foundation
import World
import XCTest

/// The training loop on a tiny model: deterministic, resumable bit-for-bit, and learning.
final class TrainerTests: XCTestCase {
    static let encoder: PromptEncoder? = try? PromptEncoder()

    func options() -> TrainingOptions {
        var o = TrainingOptions()
        o.width = 64; o.doubleBlocks = 1; o.singleBlocks = 1
        o.batch = 4; o.steps = 40; o.warmup = 5; o.lr = 1e-3; o.seed = 5
        return o
    }

    func trainer() throws -> Trainer {
        let encoder = try XCTUnwrap(Self.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        return try Trainer(options: options(), encoder: encoder, scenes: try SceneSampler.load(split: .train, seed: 5))
    }

    func testDeterministicAndResumable() throws {
        let a = try trainer(), b = try trainer()
        var la: [Double] = [], lb: [Double] = []
        for _ in 0..<4 { la.append(try a.trainStep()) }
        for _ in 0..<2 { lb.append(try b.trainStep()) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mce-ckpt-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try b.saveCheckpoint(to: path)
        let c = try trainer()
        try c.loadCheckpoint(from: path)
        XCTAssertEqual(c.step, 2)
        for _ in 0..<2 { lb.append(try c.trainStep()) }
        XCTAssertEqual(la, lb, "same seed, same losses, also across a checkpoint")
        XCTAssertEqual(a.ema.allBuffers.map(\.array), c.ema.allBuffers.map(\.array))
    }

    func testLossDecreases() throws {
        let t = try trainer()
        var losses: [Double] = []
        for _ in 0..<40 { losses.append(try t.trainStep()) }
        let first = losses[0..<5].reduce(0, +) / 5, last = losses[35..<40].reduce(0, +) / 5
        XCTAssertLessThan(last, 0.8 * first, "losses \(losses)")
    }

    func testCheckpointWithOtherOptionsIsRefused() throws {
        let t = try trainer()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mce-ckpt-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try t.saveCheckpoint(to: path)
        var o = options()
        o.lr = 5e-4
        let other = try Trainer(options: o, encoder: try XCTUnwrap(Self.encoder), scenes: try SceneSampler.load(split: .train, seed: 5))
        XCTAssertThrowsError(try other.loadCheckpoint(from: path)) { XCTAssertTrue("\($0)".contains("different options"), "\($0)") }
    }

    func testRescheduleAcceptsOnlyANewLength() throws {
        let t = try trainer()
        _ = try t.trainStep()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mce-ckpt-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try t.saveCheckpoint(to: path)
        func with(_ change: (inout TrainingOptions) -> Void) throws -> Trainer {
            var o = options(); change(&o)
            return try Trainer(options: o, encoder: try XCTUnwrap(Self.encoder), scenes: try SceneSampler.load(split: .train, seed: 5))
        }
        let shorter = try with { $0.steps = 30 }
        XCTAssertThrowsError(try shorter.loadCheckpoint(from: path), "a new length needs newLength: true")
        try shorter.loadCheckpoint(from: path, newLength: true)
        XCTAssertEqual(shorter.step, 1)
        XCTAssertEqual(shorter.schedule, "40@0,30@1")
        let otherLR = try with { $0.steps = 30; $0.lr = 5e-4 }
        XCTAssertThrowsError(try otherLR.loadCheckpoint(from: path, newLength: true)) { XCTAssertTrue("\($0)".contains("different options"), "\($0)") }
    }
}
