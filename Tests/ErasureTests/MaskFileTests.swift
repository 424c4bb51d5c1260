import Flux
import Foundation
import SafeTensors
import TestSupport
import XCTest

@testable import Erasure

/// The golden `dev` model's config (fixtures: scripts/golden/generate.py, generate_masked.py).
enum BakeFixtures {
    static var devConfig: FluxConfig {
        get throws { try FluxConfig.load(json: URL(fileURLWithPath: Fixtures.golden("dev/config.json"))) }
    }

    /// A fresh temporary folder, removed at the end of the test.
    static func tempDir(_ test: XCTestCase) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mce-erasure-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }
}

/// The error's message (ErasureError descriptions are the whole message).
func errorText(_ body: () throws -> Void) -> String {
    do { try body() } catch { return "\(error)" }
    return "<no error>"
}

final class MaskFileTests: XCTestCase {
    let ff = MaskSite(.ff, block: 0), ffc = MaskSite(.ffContext, block: 1), sAttn = MaskSite(.singleAttn, block: 2)
    let sNorm = MaskSite(.singleNorm, block: 0)

    func sample() throws -> MaskFile {
        let c = try BakeFixtures.devConfig
        var logits: [MaskSite: [Float]] = [:], masks: [MaskSite: [Float]] = [:]
        for (k, site) in [ff, ffc, sAttn].enumerated() {
            let w = site.width(c)
            logits[site] = (0..<w).map { Float($0 % 7) - 3.25 + Float(k) }
            masks[site] = logits[site]!.map { $0 > 0 ? 1 : 0 }
        }
        masks[sNorm] = [Float](repeating: 1, count: sNorm.width(c))   // a mask without logits
        return MaskFile(logits: logits.sites, masks: masks.sites, metadata: ["concept": "cat", "note": "ünïcode ✓"])
    }

    func testRoundTrip() throws {
        let dir = try BakeFixtures.tempDir(self)
        let f = try sample()
        let path = dir + "/m.safetensors"
        try f.write(to: path)
        let g = try MaskFile.read(path, config: try BakeFixtures.devConfig)
        XCTAssertEqual(g.masks, f.masks)
        XCTAssertEqual(g.logits, f.logits)
        XCTAssertEqual(g.metadata, f.metadata)
        // The on-disk names are the diffusers module names.
        let names = try SafeTensorsFile(path: path).names
        XCTAssertTrue(names.contains("transformer_blocks.1.ff_context.mask"))
        XCTAssertTrue(names.contains("single_transformer_blocks.2.attn.logits"))
        XCTAssertTrue(names.contains("single_transformer_blocks.0.norm.mask"))
        XCTAssertEqual(try SafeTensorsFile(path: path).info("transformer_blocks.0.ff.mask").dtype, .F32)
        // No temporary left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.safetensors"])
        // The engine buffers hold the same values.
        let set = g.maskSet()
        XCTAssertEqual(set[ffc]?.array, f.masks[.transformer(ffc)])
        XCTAssertEqual(set.values.count, 4)
    }

    func testMaskedCountsAreSortedByKindThenBlock() throws {
        var f = try sample()
        f.masks[.transformer(MaskSite(.ff, block: 1))] = [Float](repeating: 0, count: 192)
        let c = f.transformerMaskedCounts
        XCTAssertEqual(f.allMaskedCounts.map(\.site), c.map(\.site.description))
        XCTAssertEqual(c.map(\.site), [ff, MaskSite(.ff, block: 1), ffc, sNorm, sAttn])
        XCTAssertEqual(c[1].masked, 192)
        XCTAssertEqual(c[3].masked, 0)
        XCTAssertEqual(c.map(\.total), [192, 192, 192, 144, 3])
        XCTAssertEqual(c[0].masked, f.masks[.transformer(ff)]!.filter { $0 == 0 }.count)
    }

    func testMergeKeepsOnlyUnitsEveryFileKeeps() throws {
        let a = MaskFile(logits: [ff: [1, -1, 2, -2]].sites, masks: [ff: [1, 0, 1, 0], sAttn: [1, 0, 1]].sites,
                         metadata: ["concept": "cat", MaskFile.Key.modelHash: "abc"])
        let b = MaskFile(masks: [ff: [1, 1, 0, 0], ffc: [0, 1]].sites, metadata: ["concept": "dog", MaskFile.Key.modelHash: "abc"])
        let m = try MaskFile.merge([a, b])
        XCTAssertEqual(m.transformerMasks[ff], [1, 0, 0, 0])
        XCTAssertEqual(m.transformerMasks[sAttn], [1, 0, 1])   // absent in b = all ones there
        XCTAssertEqual(m.transformerMasks[ffc], [0, 1])
        XCTAssertTrue(m.logits.isEmpty)
        XCTAssertEqual(m.metadata[MaskFile.Key.mergedFrom], #"["cat","dog"]"#)
        XCTAssertEqual(m.metadata[MaskFile.Key.modelHash], "abc")
        // Merging a merged file flattens the concept list.
        let c = MaskFile(masks: [ff: [0, 1, 1, 1]].sites, metadata: ["concept": "car"])
        let mm = try MaskFile.merge([m, c])
        XCTAssertEqual(mm.transformerMasks[ff], [0, 0, 0, 0])
        XCTAssertEqual(mm.metadata[MaskFile.Key.mergedFrom], #"["cat","dog","car"]"#)
        // Refusals.
        XCTAssertTrue(errorText { _ = try MaskFile.merge([a, MaskFile(masks: [ff: [1, 1]].sites)]) }.contains("'transformer_blocks.0.ff' has 4 units in an earlier file but 2 in file 2"))
        XCTAssertTrue(errorText { _ = try MaskFile.merge([a, MaskFile(masks: [:], metadata: [MaskFile.Key.modelHash: "xyz"])]) }.contains("different models"))
        XCTAssertTrue(errorText { _ = try MaskFile.merge([]) }.contains("at least one"))
    }

    func testAverageBinarisesTheMeanLogits() throws {
        func run(_ l: [Float], _ t: [Float], seed: String) -> MaskFile {
            MaskFile(logits: [ff: l].sites.merging([0: t].textSites) { a, _ in a },
                     masks: [ff: l.map { $0 > 0 ? 1 : 0 }].sites.merging([0: t.map { $0 > 0 ? 1 : 0 }].textSites) { a, _ in a },
                     metadata: ["concept": "cat", "seed": seed, MaskFile.Key.modelHash: "abc"])
        }
        // Unit 0 closed by one run only, unit 1 by all three, unit 2 by two of three but narrowly, unit 3 by none.
        let a = run([-1, -2, -0.5, 3], [2, -1], seed: "0"), b = run([2, -3, -0.5, 3], [-3, -1], seed: "1")
        let c = run([2, -1, 0.8, 3], [2, 1], seed: "2")
        let m = try MaskFile.average([a, b, c], binarisation: .threshold(0))
        assertClose(m.logits[.transformer(ff)]!, [1, -2, -0.2 / 3, 3] as [Double], relTol: 1e-6, "mean logits")
        XCTAssertEqual(m.transformerMasks[ff], [1, 0, 0, 1])
        assertClose(m.logits[.textEncoder(layer: 0)]!, [1.0 / 3, -1.0 / 3] as [Double], relTol: 1e-6, "mean text logits")
        XCTAssertEqual(m.textMasks[0], [1, 0])
        XCTAssertEqual(m.metadata["seed"], "0,1,2")
        XCTAssertEqual(m.metadata["binarisation"], "threshold:0.0")
        XCTAssertEqual(m.metadata["concept"], "cat")
        // A higher threshold removes more units.
        XCTAssertEqual(try MaskFile.average([a, b, c], binarisation: .threshold(1.5)).transformerMasks[ff], [0, 0, 0, 1])
        // Refusals.
        XCTAssertTrue(errorText { _ = try MaskFile.average([a, MaskFile(masks: [ff: [1, 1, 1, 1]].sites)], binarisation: .threshold(0)) }.contains("file 2 has no logits"))
        XCTAssertTrue(errorText { _ = try MaskFile.average([a, run([1, 1], [1, 1], seed: "3")], binarisation: .threshold(0)) }.contains("'transformer_blocks.0.ff' has 4 units in file 1 but 2 in file 2"))
        var other = run([1, 1, 1, 1], [1, 1], seed: "3"); other.metadata[MaskFile.Key.modelHash] = "xyz"
        XCTAssertTrue(errorText { _ = try MaskFile.average([a, other], binarisation: .threshold(0)) }.contains("different models"))
        // Mean-ablation fills are averaged; a file with fills and one without are refused.
        var fa = a, fb = b
        fa.fill = [0: [2, 4]].textSites; fb.fill = [0: [0, 8]].textSites
        XCTAssertEqual(try MaskFile.average([fa, fb], binarisation: .threshold(0)).textFill[0], [1, 6])
        XCTAssertTrue(errorText { _ = try MaskFile.average([fa, b], binarisation: .threshold(0)) }.contains("some files ablate text-encoder units to their mean"))
        let noText = MaskFile(logits: [ff: [1, 1, 1, 1]].sites, masks: [ff: [1, 1, 1, 1]].sites)
        XCTAssertTrue(errorText { _ = try MaskFile.average([a, noText], binarisation: .threshold(0)) }.contains("other sites than file 1"))
    }

    /// Writes a raw safetensors file (bypassing MaskFile's own checks) and returns read's error message.
    func readError(_ tensors: [(String, [Float])], config: FluxConfig? = nil) throws -> String {
        let dir = try BakeFixtures.tempDir(self)
        var w = SafeTensorsWriter()
        for (n, v) in tensors { w.add(n, shape: [v.count], floats: v) }
        let path = dir + "/bad.safetensors"
        try w.write(to: path)
        return errorText { _ = try MaskFile.read(path, config: config) }
    }

    func testRejectsBadFiles() throws {
        let cfg = try BakeFixtures.devConfig
        let ok = [Float](repeating: 1, count: 192)
        var m = try readError([("transformer_blocks.0.ff.mask", [1, 0.5, 0])])
        XCTAssertTrue(m.contains("bad.safetensors") && m.contains("'transformer_blocks.0.ff' must hold only 0 or 1") && m.contains("unit 1 is 0.5"), m)
        m = try readError([("transformer_blocks.0.ff.mask", [1, .nan])])
        XCTAssertTrue(m.contains("only 0 or 1") && m.contains("nan"), m)
        m = try readError([("transformer_blocks.0.fff.mask", [1])])
        XCTAssertTrue(m.contains("'transformer_blocks.0.fff' is not a mask site"), m)
        m = try readError([("transformer_blocks.0.ff.weight", [1])])
        XCTAssertTrue(m.contains("'<site>.mask', '<site>.logits' or (text-encoder sites) '<site>.fill'"), m)
        m = try readError([("transformer_blocks.0.ff.fill", [1])])
        XCTAssertTrue(m.contains("fill values are for text-encoder sites only"), m)
        m = try readError([("text_encoder.encoder.layer.0.intermediate.fill", [1])])
        XCTAssertTrue(m.contains("needs a 'text_encoder.encoder.layer.0.intermediate.mask' of the same width"), m)
        m = try readError([("transformer_blocks.0.ff.mask", [1, 1, 1])], config: cfg)
        XCTAssertTrue(m.contains("mask 'transformer_blocks.0.ff' has 3 values but the model's site has 192"), m)
        m = try readError([("transformer_blocks.2.ff.mask", ok)], config: cfg)
        XCTAssertTrue(m.contains("'transformer_blocks.2.ff' does not exist in the model: it has 2 double-stream blocks"), m)
        m = try readError([("transformer_blocks.0.ff.mask", ok), ("transformer_blocks.0.ff.logits", [1, 2])])
        XCTAssertTrue(m.contains("has 2 logits but 192 mask values"), m)
        m = try readError([("transformer_blocks.0.ff.logits", [1, 2])])
        XCTAssertTrue(m.contains("has logits but no mask"), m)
        m = try readError([("transformer_blocks.0.ff.mask", [1]), ("transformer_blocks.0.ff.logits", [.infinity])])
        XCTAssertTrue(m.contains("must be finite"), m)
        // Valid without a config, rejected against the model.
        XCTAssertEqual(try readError([("single_transformer_blocks.2.attn.mask", [1, 0, 1])]), "<no error>")
        XCTAssertEqual(try readError([("single_transformer_blocks.2.attn.mask", [1, 0, 1])], config: cfg), "<no error>")
        m = try readError([("single_transformer_blocks.3.attn.mask", [1, 0, 1])], config: cfg)
        XCTAssertTrue(m.contains("3 single-stream blocks"), m)
        // Writing refuses non-binary masks too.
        m = errorText { try MaskFile(masks: [ff: [0.25]].sites).write(to: "/nonexistent/x.safetensors") }
        XCTAssertTrue(m.contains("only 0 or 1"), m)
        // A missing file names the path.
        m = errorText { _ = try MaskFile.read("/nonexistent/masks.safetensors") }
        XCTAssertTrue(m.contains("/nonexistent/masks.safetensors"), m)
    }

    func testModelHash() throws {
        // Streamed SHA-256 equals sha256sum of the file, whatever the chunk size.
        let file = Fixtures.golden("dev/diffusion_pytorch_model.safetensors")
        let want = "969eb6a2e5e7337776ce0a9e4284f5b77ce5688a9f60d8dda8ad66bfc5c2df1b"
        XCTAssertEqual(try modelHash(file), want)
        XCTAssertEqual(try modelHash(file, chunkSize: 4093), want)
        // A folder: config.json, then the weights files by name (= `cat config.json *.safetensors | sha256sum`).
        XCTAssertEqual(try modelHash(Fixtures.golden("dev")), "65aa5e6783f733c3bbb131f2f5867e43e1d210db2e271f46ec0ce4dfc58b841b")
        XCTAssertNotEqual(try modelHash(Fixtures.golden("dev_sharded")), try modelHash(Fixtures.golden("dev_bf16")))
        let m = errorText { _ = try modelHash("/nonexistent/model") }
        XCTAssertTrue(m.contains("/nonexistent/model"), m)
        let empty = try BakeFixtures.tempDir(self)
        XCTAssertTrue(errorText { _ = try modelHash(empty) }.contains("no .safetensors"))
    }
}
