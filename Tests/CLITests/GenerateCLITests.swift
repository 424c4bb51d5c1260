import BaseModel
import Erasure
import Evaluation
import Flux
import Foundation
import Imaging
import XCTest

/// `mce generate` as a user runs it: one short sample, and the clear errors bad prompts and arguments get
/// (an unknown word, an empty or over-long prompt; no image is written for a refused prompt).
extension CLITests {
    func testGenerateBadInput() throws {
        let out = dir.appendingPathComponent("g").path
        func fails(_ args: [String], _ message: String, exit: Int32 = 1, line: UInt = #line) throws {
            let r = try mce(["generate", "--model", baseModel, "--out", out, "--count", "1", "--steps", "2"] + args,
                            expectExit: exit, line: line)
            XCTAssertTrue(r.err.contains(message), "expected '\(message)' in: \(r.err)", line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused run wrote \(out)", line: line)
        }
        try fails(["--prompt", ""], "--prompt \"\": the prompt is empty")
        try fails(["--prompt", "a red cat", "--prompt", " \t"], "the prompt is empty")
        try fails(["--prompt", "a red ꙮ on a blue background"], "words the vocabulary does not know")
        try fails(["--prompt", Array(repeating: "a red cat", count: 100).joined(separator: " ")], "the prompt is too long")
        try fails(["--prompt", "a red cat", "--guidance", "nan"], "--guidance must be a finite number", exit: 64)
        try fails(["--prompt", "a red cat", "--count", "0"], "--count and --steps must be ≥ 1", exit: 64)
        try fails(["--prompt", "a red cat", "--model", dir.appendingPathComponent("none").path], "none")

        // An output folder that cannot be created: the path and the reason, not an NSError dump.
        let file = dir.appendingPathComponent("plain").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try mce(["generate", "--model", baseModel, "--prompt", "a red cat on a blue background", "--count", "1",
                         "--steps", "2", "--out", file + "/sub"], expectExit: 1)
        XCTAssertTrue(r.err.contains("cannot create or write '\(file)"), r.err)
        XCTAssertFalse(r.err.contains("NSCocoaErrorDomain"), r.err)

        // A good prompt writes its PNGs and the grid.
        try mce(["generate", "--model", baseModel, "--prompt", "a red cat on a blue background", "--count", "2", "--steps", "2", "--out", out])
        for name in ["000.png", "001.png", "grid.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: (out as NSString).appendingPathComponent(name)), name)
        }
    }
}

/// `mce generate` on an erased model draws what `mce evaluate` measures: for the same prompt and seed its image
/// equals the evaluation's sample of that model, read from a mask file and from the baked pair (checkpoint and
/// erased text encoder), and differs from the original's. (The evaluation samples one prompt per model call here:
/// with the default 32 a pixel byte may differ by one, the matrix products' rounding for another row count.)
extension CLITests {
    func testGenerateDrawsTheErasedModelsEvaluationSamples() throws {
        let base = FluxTransformer(weights: try FluxWeightLoader(path: baseModel).load(as: Float.self))
        // A mask file that closes every third unit of the first double block's feed-forward and of two text-encoder layers.
        let site = try XCTUnwrap(MaskSite(name: "transformer_blocks.0.ff"))
        func thirds(_ n: Int) -> [Float] { (0..<n).map { $0 % 3 == 0 ? 0 : 1 } }
        let file = MaskFile(masks: [.transformer(site): thirds(site.width(base.config)), .textEncoder(layer: 0): thirds(1536),
                                    .textEncoder(layer: 4): thirds(1536)],
                            metadata: [MaskFile.Key.concept: "cat"])
        let masks = dir.appendingPathComponent("m.safetensors").path
        try file.write(to: masks)
        let ev = dir.appendingPathComponent("ev").path
        try mce(["evaluate", "--model", baseModel, "--masks", masks, "--samples", "1", "--per-class", "1", "--steps", "3",
                 "--real-scenes", "2", "--save-samples", "--sample-batch", "1", "--out", ev])
        var p = EvaluationProtocol()
        p.samples = 1; p.perClass = 1; p.samplingSteps = 3
        let cat = try XCTUnwrap(ConceptSpec.resolve("cat").classID)
        let neutral = EvaluationPrompts.neutral(excluding: [cat], protocol: p)
        // An erase output folder as `mce erase` leaves it: masks.safetensors, the baked model/ and text_encoder/ beside it.
        let bake = dir.appendingPathComponent("bake").path
        try FileManager.default.createDirectory(atPath: bake, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: masks, toPath: bake + "/masks.safetensors")
        try mce(["masks", "bake", "--masks", masks, "--model", baseModel, "--out", bake + "/model"])
        for k in [0, 7] {
            let prompt = neutral[k]
            let sample = try PNG.read(path: ev + String(format: "/samples/m/neutral/%04d.png", k))
            let original = try PNG.read(path: ev + String(format: "/samples/original/neutral/%04d.png", k))
            for (option, value) in [("--masks", masks), ("--masks", bake), ("--erased", bake + "/model"), ("--erased", bake)] {
                let out = dir.appendingPathComponent("g\(k)\(option)\(value.count)").path
                try mce(["generate", "--model", baseModel, option, value, "--prompt", prompt.text, "--seed", "\(prompt.seed)",
                         "--count", "1", "--steps", "3", "--out", out])
                let g = try PNG.read(path: out + "/000.png")     // 4× nearest-neighbour enlargement
                XCTAssertEqual(g.width, 4 * sample.width)
                var down: [UInt8] = []
                for y in 0..<sample.height { for x in 0..<sample.width { for c in 0..<3 { down.append(g.rgb[((4 * y) * g.width + 4 * x) * 3 + c]) } } }
                let diffs = zip(down, sample.rgb).map { abs(Int($0) - Int($1)) }
                XCTAssertTrue(down == sample.rgb, "\(option) '\(prompt.text)' seed \(prompt.seed): generate and evaluate differ: \(diffs.filter { $0 > 0 }.count) bytes, max \(diffs.max()!)")
                XCTAssertTrue(down != original.rgb, "\(option): the erased model's sample differs from the original's")
            }
        }
    }
}
