import Foundation
import SafeTensors
import XCTest

/// `mce forward` / `mce sample` as a user runs them, on the golden fixtures in every weight layout.
final class CLITests: XCTestCase {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/golden")
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mce-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// The `mce` executable next to the test bundle.
    var binary: URL {
        var d = Bundle.main.bundleURL
        for _ in 0..<3 {
            let c = d.appendingPathComponent("mce")
            if FileManager.default.isExecutableFile(atPath: c.path) { return c }
            d = d.deletingLastPathComponent()
        }
        return Bundle.main.bundleURL.appendingPathComponent("mce")
    }

    @discardableResult
    func mce(_ args: [String], expectExit: Int32 = 0, environment: [String: String] = [:], file: StaticString = #filePath,
             line: UInt = #line) throws -> (out: String, err: String) {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let o = Pipe(), e = Pipe()
        p.standardOutput = o; p.standardError = e
        try p.run()
        let out = String(decoding: o.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, expectExit, "mce \(args.joined(separator: " ")): \(err)", file: file, line: line)
        return (out, err)
    }

    func g(_ n: String) -> String { Self.golden.appendingPathComponent(n).path }

    /// `--model PATH`, plus `--config` for BFL files (they carry none, and small heads defeat inference).
    func modelArgs(_ model: String, _ m: String) -> [String] {
        ["--model", g(model)] + (model.hasSuffix("_bfl.safetensors") ? ["--config", g("\(m)/config.json")] : [])
    }

    func assertClose(_ a: [Double], _ b: [Double], _ tol: Double, _ what: String) {
        XCTAssertEqual(a.count, b.count, what)
        let s = b.map(abs).max() ?? 0
        let d = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(d, tol * s, "\(what): max diff \(d), scale \(s)")
    }

    func testForwardInEveryLayout() throws {
        for m in ["tiny", "dev"] {
            let ref = try SafeTensorsFile(path: g("\(m).io.safetensors")).doubles("output_float64_reference")
            for model in [m, "\(m)_sharded", "\(m)_bfl.safetensors", "\(m)_bf16"] {
                let out = dir.appendingPathComponent("\(model).out.safetensors").path
                try mce(["forward"] + modelArgs(model, m) + ["--inputs", g("\(m).io.safetensors"), "--output", out])
                assertClose(try SafeTensorsFile(path: out).doubles("output"), ref, 1e-5, "mce forward \(model)")
            }
            let out64 = dir.appendingPathComponent("\(m).f64.safetensors").path
            try mce(["forward", "--model", g(m), "--inputs", g("\(m).io.safetensors"), "--output", out64, "--precision", "f64"])
            let f64 = try SafeTensorsFile(path: out64)
            XCTAssertEqual(try f64.info("output").dtype, .F32)
            assertClose(try f64.doubles("output_float64"), ref, 1e-10, "mce forward --precision f64 \(m)")
        }
    }

    /// `--precision bf16`: within 2e-2 of max|out| of the f64 reference, recorded in the metadata, and not the f32
    /// result; with `MCE_NO_BF16` (as on a CPU without bf16) one line says so and the f32 result comes out.
    func testForwardInBF16AndItsFallback() throws {
        let m = "dev"
        let ref = try SafeTensorsFile(path: g("\(m).io.safetensors")).doubles("output_float64_reference")
        let args = ["forward", "--model", g(m), "--inputs", g("\(m).io.safetensors"), "--precision", "bf16", "--output"]
        let f32 = dir.appendingPathComponent("f32.safetensors").path
        try mce(["forward", "--model", g(m), "--inputs", g("\(m).io.safetensors"), "--output", f32])
        let f32Out = try SafeTensorsFile(path: f32).doubles("output")
        let probe = try mce(["engine", "info", "--model", g(m)])
        if probe.out.contains("avx512_core_bf16") || probe.out.contains("avx512_core_amx") {
            let out = dir.appendingPathComponent("bf16.safetensors").path
            let r = try mce(args + [out])
            XCTAssertFalse(r.err.contains("runs in f32"), r.err)
            let file = try SafeTensorsFile(path: out)
            XCTAssertEqual(file.metadata["precision"], "bf16")
            let o = try file.doubles("output")
            assertClose(o, ref, 2e-2, "mce forward --precision bf16")
            XCTAssertNotEqual(o, f32Out, "bf16 ran the f32 path")
        }
        let out = dir.appendingPathComponent("fallback.safetensors").path
        let r = try mce(args + [out], environment: ["MCE_NO_BF16": "1"])
        XCTAssertEqual(r.err.components(separatedBy: "runs in f32").count - 1, 1, "one line about the fallback: \(r.err)")
        let file = try SafeTensorsFile(path: out)
        XCTAssertEqual(file.metadata["precision"], "f32")
        XCTAssertEqual(try file.doubles("output"), f32Out, "the fallback is the f32 path, bit for bit")
    }

    func testSample() throws {
        for m in ["tiny", "dev"] {
            let file = SafeTensorsFile.self
            let ref = try file.init(path: g("\(m).sample.safetensors"))
            for model in [m, "\(m)_bfl.safetensors"] {
                let out = dir.appendingPathComponent("\(model).sample.safetensors").path
                try mce(["sample"] + modelArgs(model, m) + ["--inputs", g("\(m).sample.safetensors"), "--steps", "4", "--output", out])
                let got = try file.init(path: out)
                assertClose(try got.doubles("sample"), try ref.doubles("sample_float64_reference"), 1e-5, "mce sample \(model)")
                let sig = try got.doubles("sigmas"), refSig = try ref.doubles("sigmas")
                XCTAssertEqual(sig.count, refSig.count)
                for (a, b) in zip(sig, refSig) { XCTAssertEqual(a, b, accuracy: 1e-12) }
            }
        }
    }

    func testGradient() throws {
        for m in ["tiny", "dev"] {
            let ref = try SafeTensorsFile(path: g("\(m).grad.safetensors"))
            let out = dir.appendingPathComponent("\(m).grad.out.safetensors").path
            try mce(["gradient", "--model", g(m), "--inputs", g("\(m).grad.safetensors"), "--steps", "4", "--output", out,
                     "--precision", "f64"])
            let got = try SafeTensorsFile(path: out)
            XCTAssertEqual(try got.doubles("loss")[0], try ref.doubles("ref.loss")[0], accuracy: 1e-12)
            let grads = got.names.filter { $0.hasPrefix("grad.") }
            XCTAssertEqual(grads.count, ref.names.filter { $0.hasPrefix("ref.grad.") }.count)
            for n in grads { assertClose(try got.doubles(n), try ref.doubles("ref." + n), 1e-8, "mce gradient \(m) \(n)") }
        }
        // A mask for a block the model does not have.
        let out = dir.appendingPathComponent("bad.safetensors").path
        var w = SafeTensorsWriter()
        let src = try SafeTensorsFile(path: g("tiny.grad.safetensors"))
        for n in src.names where !n.hasPrefix("ref.") { w.add(n, shape: try src.info(n).shape, floats: try src.floats(n)) }
        w.add("mask.transformer_blocks.5.ff", shape: [128], floats: [Float](repeating: 1, count: 128))
        let bad = dir.appendingPathComponent("badmask.safetensors").path
        try w.write(to: bad)
        let r = try mce(["gradient", "--model", g("tiny"), "--inputs", bad, "--steps", "2", "--output", out], expectExit: 1)
        XCTAssertTrue(r.err.contains("transformer_blocks.5.ff"), r.err)
    }

    func testExportToBF16DiffusersFolder() throws {
        // The fixture weights are bf16-representable, so a bf16 export of the BFL file is lossless.
        let folder = dir.appendingPathComponent("exported").path
        try mce(["export", "--model", g("dev_bfl.safetensors"), "--config", g("dev/config.json"), "--out", folder, "--dtype", "bf16"])
        XCTAssertEqual(try SafeTensorsFile(path: folder + "/diffusion_pytorch_model.safetensors").info("proj_out.weight").dtype, .BF16)
        let out = dir.appendingPathComponent("exported.out.safetensors").path
        try mce(["forward", "--model", folder, "--inputs", g("dev.io.safetensors"), "--output", out])
        assertClose(try SafeTensorsFile(path: out).doubles("output"),
                    try SafeTensorsFile(path: g("dev.io.safetensors")).doubles("output_float64_reference"), 1e-5, "exported bf16")
    }

    func testClearErrors() throws {
        let out = dir.appendingPathComponent("o.safetensors").path
        var r = try mce(["forward", "--model", g("nope"), "--inputs", g("tiny.io.safetensors"), "--output", out], expectExit: 1)
        XCTAssertTrue(r.err.contains("nope"), r.err)
        // dev inputs on the tiny model: wrong widths.
        r = try mce(["forward", "--model", g("tiny"), "--inputs", g("dev.io.safetensors"), "--output", out], expectExit: 1)
        XCTAssertTrue(r.err.contains("hidden_states"), r.err)
        r = try mce(["sample", "--model", g("tiny"), "--inputs", g("tiny.io.safetensors"), "--steps", "0", "--output", out], expectExit: 64)
        XCTAssertTrue(r.err.contains("--steps"), r.err)
        // An output folder that does not exist: a clear error and no partial file.
        let bad = dir.appendingPathComponent("missing/dir/o.safetensors").path
        r = try mce(["forward", "--model", g("tiny"), "--inputs", g("tiny.io.safetensors"), "--output", bad], expectExit: 1)
        XCTAssertTrue(r.err.contains("missing/dir"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
