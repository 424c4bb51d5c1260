import Flux
import Foundation
import SafeTensors
import TestSupport
import XCTest

/// Broken checkpoints and inputs must fail with a message naming the file and the tensor.
final class LoaderErrorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mce-loader-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Copies a fixture file's tensors through `edit` (which may drop or change them) into a new file.
    func rewrite(_ fixture: String, to name: String, metadata: [String: String] = [:],
                 edit: (String, [Int], [Float]) -> (shape: [Int], values: [Float])?) throws -> String {
        let src = try SafeTensorsFile(path: Fixtures.golden(fixture))
        var w = SafeTensorsWriter(metadata: metadata)
        for n in src.names {
            if let (shape, v) = edit(n, try src.info(n).shape, try src.floats(n)) { w.add(n, shape: shape, floats: v) }
        }
        let path = dir.appendingPathComponent(name).path
        try w.write(to: path)
        return path
    }

    func assertFluxError(_ body: @autoclosure () throws -> Any, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            let msg = "\(e)"
            for p in parts { XCTAssertTrue(msg.contains(p), "error '\(msg)' should mention '\(p)'", file: file, line: line) }
        }
    }

    func testMissingTensorIsNamed() throws {
        let p = try rewrite("dev_bfl.safetensors", to: "missing.safetensors") { n, s, v in
            n == "double_blocks.1.txt_attn.qkv.bias" ? nil : (s, v)
        }
        let config = try FluxWeightLoader(path: Fixtures.golden("dev")).config
        assertFluxError(try FluxWeightLoader(path: p, config: config), contains: ["double_blocks.1.txt_attn.qkv.bias", "missing.safetensors"])
    }

    func testWrongShapeIsNamed() throws {
        let p = try rewrite("dev/diffusion_pytorch_model.safetensors", to: "shape.safetensors") { n, s, v in
            n == "transformer_blocks.0.ff.net.2.weight" ? ([s[1], s[0]], v) : (s, v)
        }
        let config = try FluxWeightLoader(path: Fixtures.golden("dev")).config
        let loader = try FluxWeightLoader(path: p, config: config)
        assertFluxError(try loader.load(as: Float.self), contains: ["transformer_blocks.0.ff.net.2.weight", "shape"])
    }

    func testNonFiniteWeightIsRefused() throws {
        let p = try rewrite("tiny/diffusion_pytorch_model.safetensors", to: "nan.safetensors") { n, s, v in
            var v = v
            if n == "proj_out.weight" { v[3] = .nan }
            return (s, v)
        }
        let config = try FluxWeightLoader(path: Fixtures.golden("tiny")).config
        assertFluxError(try FluxWeightLoader(path: p, config: config).load(as: Float.self), contains: ["proj_out.weight", "non-finite"])
    }

    func testConfigThatDoesNotMatchTheCheckpoint() throws {
        // The dev checkpoint has 3 single blocks; a config saying 2 must not silently ignore one.
        var c = try FluxWeightLoader(path: Fixtures.golden("dev")).config
        c.numSingleLayers = 2
        assertFluxError(try FluxWeightLoader(path: Fixtures.golden("dev"), config: c), contains: ["single_transformer_blocks.2", "config"])
        // A wider config than the weights.
        var wide = c
        wide.numSingleLayers = 3
        wide.numAttentionHeads = 4
        wide.axesDimsRope = [4, 6, 6]
        assertFluxError(try FluxWeightLoader(path: Fixtures.golden("dev"), config: wide).load(as: Float.self), contains: ["shape"])
    }

    func testBFLFileWithoutConfigAndSmallHeadsAsksForConfig() throws {
        // BFL single files carry no config; with heads ≠ 128 the RoPE split cannot be inferred.
        let p = try rewrite("dev_bfl.safetensors", to: "noconfig.safetensors") { _, s, v in (s, v) }
        assertFluxError(try FluxWeightLoader(path: p), contains: ["--config"])
        // …but a config in __metadata__ works, as does an explicit one.
        let cfg = try FluxWeightLoader(path: Fixtures.golden("dev")).config
        let withMeta = try rewrite("dev_bfl.safetensors", to: "meta.safetensors",
                                   metadata: ["config": String(decoding: cfg.jsonData(), as: UTF8.self)]) { _, s, v in (s, v) }
        XCTAssertEqual(try FluxWeightLoader(path: withMeta).config, cfg)
    }

    func testMissingModelPath() {
        assertFluxError(try FluxWeightLoader(path: dir.appendingPathComponent("nope").path), contains: ["nope"])
    }

    func testBadInputs() throws {
        let config = try FluxWeightLoader(path: Fixtures.golden("dev")).config
        // Wrong hidden_states width.
        let p = try rewrite("dev.io.safetensors", to: "badio.safetensors") { n, s, v in
            n == "hidden_states" ? ([1, 30, 8], v) : (s, v)
        }
        assertFluxError(try ModelInputs<Float>(path: p, config: config, requireTimestep: true), contains: ["hidden_states", "badio.safetensors"])
        // guidance missing for a guidance model.
        let q = try rewrite("dev.io.safetensors", to: "noguid.safetensors") { n, s, v in n == "guidance" ? nil : (s, v) }
        assertFluxError(try ModelInputs<Float>(path: q, config: config, requireTimestep: true), contains: ["guidance"])
        // guidance given to a model without guidance embeddings.
        let tinyConfig = try FluxWeightLoader(path: Fixtures.golden("tiny")).config
        let r = try rewrite("tiny.io.safetensors", to: "extra.safetensors") { n, s, v in (s, v) }
        XCTAssertNoThrow(try ModelInputs<Float>(path: r, config: tinyConfig, requireTimestep: true))
        var w = SafeTensorsWriter()
        let src = try SafeTensorsFile(path: r)
        for n in src.names { w.add(n, shape: try src.info(n).shape, floats: try src.floats(n)) }
        w.add("guidance", shape: [1], floats: [3.5])
        let withG = dir.appendingPathComponent("g.safetensors").path
        try w.write(to: withG)
        assertFluxError(try ModelInputs<Float>(path: withG, config: tinyConfig, requireTimestep: true), contains: ["guidance"])
    }
}
