import BLAS
import Flux
import Foundation
import SafeTensors
import TestSupport
import XCTest

@testable import Erasure

/// Baking binary masks into checkpoints: the baked model without masks computes what the original computes
/// with them, in every layout the golden fixtures ship in, and diffusers agrees (dev-masked-out fixture).
final class BakingTests: XCTestCase {
    /// (model, path under Tests/Fixtures/golden): diffusers folder, single file, sharded, bf16, BFL, and
    /// the ComfyUI-prefixed BFL file of `tiny`.
    static let cases = [
        ("dev", "dev"), ("dev", "dev/diffusion_pytorch_model.safetensors"), ("dev", "dev_sharded"),
        ("dev", "dev_bf16"), ("dev", "dev_bfl.safetensors"), ("tiny", "tiny_bfl.safetensors"),
    ]

    static func config(_ model: String) throws -> FluxConfig {
        try FluxConfig.load(json: URL(fileURLWithPath: Fixtures.golden("\(model)/config.json")))
    }

    /// Every site of every kind, each unit masked with probability `p`, deterministic in `seed`.
    static func randomMasks(_ c: FluxConfig, seed: UInt64, p: Double = 0.3) -> MaskFile {
        var rng = SplitMix64(seed: seed)
        var masks: [MaskSite: [Float]] = [:]
        for kind in MaskSite.Kind.allCases {
            for block in 0..<(kind.isSingleBlock ? c.numSingleLayers : c.numLayers) {
                let site = MaskSite(kind, block: block)
                masks[site] = (0..<site.width(c)).map { _ in rng.uniform() < p ? 0 : 1 }
            }
        }
        return MaskFile(masks: masks.sites, metadata: ["concept": "random-\(seed)"])
    }

    /// Forward on `<model>.io.safetensors` and a 4-step sample on `<model>.sample.safetensors`.
    func outputs<T: Scalar>(_ loader: FluxWeightLoader, model: String, masks: MaskSet<T>, as: T.Type) throws -> (forward: [T], sample: [T]) {
        let transformer = FluxTransformer(weights: try loader.load(as: T.self))
        let io = try ModelInputs<T>(path: Fixtures.golden("\(model).io.safetensors"), config: loader.config, requireTimestep: true)
        let out = try transformer.forward(hidden: io.hidden.p, sigma: io.timestep!, cond: io.cond, masks: masks).array
        let file = Fixtures.golden("\(model).sample.safetensors")
        let meta = try SafeTensorsFile(path: file).metadata
        let inp = try ModelInputs<T>(path: file, config: loader.config, requireTimestep: false)
        let shift: TimeShift = meta["shift"] == "dynamic" ? .dynamic(imageSeqLen: inp.imageTokens) : .none
        let schedule = try FlowMatchSchedule(steps: Int(meta["steps"]!)!, shift: shift)
        let x = try EulerSampler(transformer: transformer, cond: inp.cond, schedule: schedule, start: inp.hidden, masks: masks).run()
        return (out, x.array)
    }

    /// The stored tensors a mask set must modify, written out independently of Baker for both layouts.
    static func expectedModified(_ f: MaskFile, bfl: Bool, prefix: String = "") -> Set<String> {
        var names = Set<String>()
        for (site, m) in f.transformerMasks where m.contains(0) {
            let i = site.block
            let d = "transformer_blocks.\(i)", db = "double_blocks.\(i)", s = "single_transformer_blocks.\(i)", sb = "single_blocks.\(i)"
            let stored: [String]
            switch site.kind {
            case .ff: stored = [bfl ? "\(db).img_mlp.2.weight" : "\(d).ff.net.2.weight"]
            case .ffContext: stored = [bfl ? "\(db).txt_mlp.2.weight" : "\(d).ff_context.net.2.weight"]
            case .norm1: stored = ["weight", "bias"].map { bfl ? "\(db).img_mod.lin.\($0)" : "\(d).norm1.linear.\($0)" }
            case .norm1Context: stored = ["weight", "bias"].map { bfl ? "\(db).txt_mod.lin.\($0)" : "\(d).norm1_context.linear.\($0)" }
            case .doubleAttn: stored = bfl ? ["\(db).img_attn.proj.weight", "\(db).txt_attn.proj.weight"]
                : ["\(d).attn.to_out.0.weight", "\(d).attn.to_add_out.weight"]
            case .projMLP, .singleAttn: stored = [bfl ? "\(sb).linear2.weight" : "\(s).proj_out.weight"]
            case .singleNorm: stored = ["weight", "bias"].map { bfl ? "\(sb).modulation.lin.\($0)" : "\(s).norm.linear.\($0)" }
            case .addQ, .addK, .addV:
                stored = ["weight", "bias"].map { bfl ? "\(db).txt_attn.qkv.\($0)" : "\(d).\(site.kind.rawValue).\($0)" }
            }
            names.formUnion(stored.map { prefix + $0 })
        }
        return names
    }

    /// Same files, tensor names, dtypes and shapes; untouched tensors byte-identical; touched ones differ from
    /// the original only by entries set to +0. Returns the names of the touched tensors.
    func compareFiles(original: String, baked: String) throws -> Set<String> {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        _ = fm.fileExists(atPath: original, isDirectory: &isDir)
        var pairs: [(String, String)] = []
        if isDir.boolValue {
            let files = try fm.contentsOfDirectory(atPath: original).sorted()
            XCTAssertEqual(try fm.contentsOfDirectory(atPath: baked).sorted(), files, "\(baked): files")
            for f in files {
                if f.hasSuffix(".safetensors") {
                    pairs.append((original + "/" + f, baked + "/" + f))
                } else {
                    XCTAssertEqual(fm.contents(atPath: original + "/" + f), fm.contents(atPath: baked + "/" + f), "\(f) copied")
                }
            }
        } else {
            pairs = [(original, baked)]
        }
        var touched = Set<String>()
        for (o, b) in pairs {
            let of = try SafeTensorsFile(path: o), bf = try SafeTensorsFile(path: b)
            XCTAssertEqual(bf.names, of.names, "\(b): tensor names")
            for (k, v) in of.metadata { XCTAssertEqual(bf.metadata[k], v, "\(b): metadata \(k) kept") }
            XCTAssertNotNil(bf.metadata[Baker.markerKey], "\(b): bake marker")
            for n in of.names {
                let oi = try of.info(n), bi = try bf.info(n)
                XCTAssertEqual(bi.dtype, oi.dtype, "\(n) dtype")
                XCTAssertEqual(bi.shape, oi.shape, "\(n) shape")
                let ob = try of.rawBytes(n), bb = try bf.rawBytes(n)
                if ob.elementsEqual(bb) { continue }
                touched.insert(n)
                let ov = try of.floats(n), bv = try bf.floats(n)
                var zeroed = 0
                for j in 0..<ov.count where bv[j].bitPattern != ov[j].bitPattern {
                    XCTAssertEqual(bv[j].bitPattern, 0, "\(n)[\(j)]: only entries set to +0 may change")
                    zeroed += 1
                }
                XCTAssertGreaterThan(zeroed, 0, n)
            }
        }
        return touched
    }

    func testBakedModelEqualsMaskedModelInEveryLayout() throws {
        let dir = try BakeFixtures.tempDir(self)
        for (k, (model, path)) in Self.cases.enumerated() {
            let cfg = try Self.config(model)
            let masks = Self.randomMasks(cfg, seed: 7 + UInt64(model == "tiny" ? 1 : 0))
            let counts = masks.transformerMaskedCounts
            let fraction = Double(counts.reduce(0) { $0 + $1.masked }) / Double(counts.reduce(0) { $0 + $1.total })
            XCTAssertEqual(fraction, 0.3, accuracy: 0.05)
            XCTAssertEqual(Set(counts.map(\.site.kind)).count, MaskSite.Kind.allCases.count, "all site kinds")

            let source = Fixtures.golden(path)
            let isFile = path.hasSuffix(".safetensors")
            let dest = dir + "/baked-\(k)" + (isFile ? ".safetensors" : "")
            let summary = try Baker.bake(model: source, masks: masks, to: dest, config: cfg, extraMetadata: ["note": "test"])

            let original = try FluxWeightLoader(path: source, config: cfg)
            let baked = try FluxWeightLoader(path: dest, config: cfg)
            XCTAssertEqual(baked.layout, original.layout, path)
            XCTAssertEqual(summary.layout, original.layout)
            XCTAssertEqual(baked.store.names, original.store.names, path)
            XCTAssertEqual(baked.store.metadata["note"], "test")
            if isFile {   // a baked single file carries its config and loads on its own
                XCTAssertEqual(try FluxWeightLoader(path: dest).config, cfg, path)
            }

            // Bytes: only the expected tensors changed, and only by zeroed entries.
            let touched = try compareFiles(original: source, baked: dest)
            let bfl = original.layout == .bfl
            let expected = Self.expectedModified(masks, bfl: bfl, prefix: model == "tiny" ? "model.diffusion_model." : "")
            XCTAssertEqual(touched, expected, "\(path): modified tensors")
            XCTAssertEqual(Set(summary.modifiedTensors), expected, "\(path): summary")

            // Semantics: baked, unmasked == original, masked (forward and a 4-step sample).
            let m = try outputs(original, model: model, masks: masks.maskSet(), as: Float.self)
            let b = try outputs(baked, model: model, masks: MaskSet<Float>(), as: Float.self)
            let plain = try outputs(original, model: model, masks: MaskSet<Float>(), as: Float.self)
            assertClose(b.forward, m.forward, relTol: 1e-5, "\(path): baked forward vs masked forward")
            assertClose(b.sample, m.sample, relTol: 1e-5, "\(path): baked sample vs masked sample")
            XCTAssertGreaterThan(maxAbsDiff(plain.forward, m.forward).diff, 0.05 * maxAbsDiff(plain.forward, m.forward).scale,
                                 "\(path): the masks must change the output visibly")
        }
    }

    /// diffusers with hooks applying `dev-mask.safetensors` (scripts/golden/generate_masked.py) vs the baked
    /// dev folder in the engine. `MCE_BAKED_OUT=DIR` also leaves the baked folder at DIR, for the script's
    /// `--check-baked DIR` (diffusers loads the baked checkpoint).
    func testBakedDevMatchesDiffusersWithHookedMasks() throws {
        let cfg = try Self.config("dev")
        let masks = try MaskFile.read(Fixtures.golden("dev-mask.safetensors"), config: cfg)
        XCTAssertEqual(Set(masks.transformerMasks.keys.map(\.kind)).count, MaskSite.Kind.allCases.count)
        let ref = try SafeTensorsFile(path: Fixtures.golden("dev-masked-out.safetensors")).doubles("output_float64_reference")
        let dir = try BakeFixtures.tempDir(self)
        var dests = [dir + "/dev-baked"]
        if let keep = ProcessInfo.processInfo.environment["MCE_BAKED_OUT"] { dests.append(keep) }
        for dest in dests { try Baker.bake(model: Fixtures.golden("dev"), masks: masks, to: dest) }
        let baked = try FluxWeightLoader(path: dests[0])
        let original = try FluxWeightLoader(path: Fixtures.golden("dev"))

        let out32 = try outputs(baked, model: "dev", masks: MaskSet<Float>(), as: Float.self).forward
        assertClose(out32, ref, relTol: 1e-5, "baked dev f32 vs diffusers hooked f64")
        let out64 = try outputs(baked, model: "dev", masks: MaskSet<Double>(), as: Double.self).forward
        assertClose(out64, ref, relTol: 1e-10, "baked dev f64 vs diffusers hooked f64")
        // Our mask sites mean what the hooks mean.
        let masked64 = try outputs(original, model: "dev", masks: masks.maskSet(as: Double.self), as: Double.self).forward
        assertClose(masked64, ref, relTol: 1e-10, "dev + MaskSet f64 vs diffusers hooked f64")
        let unmasked = try SafeTensorsFile(path: Fixtures.golden("dev.io.safetensors")).doubles("output_float64_reference")
        XCTAssertGreaterThan(maxAbsDiff(unmasked, ref).diff, 0.05 * maxAbsDiff(unmasked, ref).scale)
    }

    func testReplacesOnlyEarlierBakes() throws {
        let dir = try BakeFixtures.tempDir(self)
        let cfg = try Self.config("dev")
        let a = Self.randomMasks(cfg, seed: 1), b = Self.randomMasks(cfg, seed: 2)
        let src = Fixtures.golden("dev_sharded")
        let dest = dir + "/out"
        try Baker.bake(model: src, masks: a, to: dest)
        try Baker.bake(model: src, masks: b, to: dest)   // replacing an earlier bake is fine
        let again = dir + "/again"
        try Baker.bake(model: src, masks: b, to: again)
        for f in try FileManager.default.contentsOfDirectory(atPath: dest) {
            XCTAssertEqual(FileManager.default.contents(atPath: "\(dest)/\(f)"), FileManager.default.contents(atPath: "\(again)/\(f)"), f)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["again", "out"], "no temporaries left")

        // Anything else is refused, and left alone.
        let other = dir + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.createFile(atPath: other + "/notes.txt", contents: Data("keep".utf8)))
        var m = errorText { try Baker.bake(model: src, masks: a, to: other) }
        XCTAssertTrue(m.contains("\(other) already exists and was not written by a bake"), m)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: other), ["notes.txt"])
        let plainFile = dir + "/plain.safetensors"
        try FileManager.default.copyItem(atPath: Fixtures.golden("dev_bfl.safetensors"), toPath: plainFile)
        m = errorText { try Baker.bake(model: Fixtures.golden("dev_bfl.safetensors"), masks: a, to: plainFile, config: cfg) }
        XCTAssertTrue(m.contains("was not written by a bake"), m)
        m = errorText { try Baker.bake(model: src, masks: a, to: plainFile) }
        XCTAssertTrue(m.contains("is a file, but the baked model"), m)
        m = errorText { try Baker.bake(model: src, masks: a, to: src) }
        XCTAssertTrue(m.contains("is the model itself"), m)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["again", "other", "out", "plain.safetensors"])
    }

    func testRefusesBadMasksAndDtypes() throws {
        let dir = try BakeFixtures.tempDir(self)
        let cfg = try Self.config("dev")
        let src = Fixtures.golden("dev")
        let ff = MaskSite(.ff, block: 1)
        var m = errorText { try Baker.bake(model: src, masks: MaskFile(masks: [ff: [Float](repeating: 0.5, count: 192)].sites), to: dir + "/a") }
        XCTAssertTrue(m.contains("'transformer_blocks.1.ff' must hold only 0 or 1") && m.contains(src), m)
        m = errorText { try Baker.bake(model: src, masks: MaskFile(masks: [MaskSite(.norm1, block: 4): [0]].sites), to: dir + "/a") }
        XCTAssertTrue(m.contains("'transformer_blocks.4.norm1' does not exist in the model: it has 2 double-stream blocks"), m)
        m = errorText { try Baker.bake(model: src, masks: MaskFile(masks: [ff: [0, 1]].sites), to: dir + "/a") }
        XCTAssertTrue(m.contains("mask 'transformer_blocks.1.ff' has 2 values but the model's site has 192"), m)
        m = errorText { try Baker.bake(model: dir + "/missing", masks: MaskFile(masks: [:]), to: dir + "/a") }
        XCTAssertTrue(m.contains("\(dir)/missing"), m)

        // An FP8 tensor that needs zeroing is refused with its name; one that does not is fine.
        let orig = try SafeTensorsFile(path: Fixtures.golden("dev/diffusion_pytorch_model.safetensors"))
        var w = SafeTensorsWriter(metadata: ["config": String(decoding: cfg.jsonData(pretty: false), as: UTF8.self)])
        let fp8 = "transformer_blocks.1.ff.net.2.weight"
        for info in orig.tensors {
            if info.name == fp8 {
                w.add(info.name, shape: info.shape, dtype: .F8_E4M3, bytes: [UInt8](repeating: 0x30, count: info.count))
            } else {
                w.add(info.name, shape: info.shape, dtype: info.dtype, bytes: [UInt8](try orig.rawBytes(info.name)))
            }
        }
        try w.write(to: dir + "/fp8.safetensors")
        let maskFF = MaskFile(masks: [ff: (0..<192).map { $0 % 3 == 0 ? 0 : 1 }].sites)
        m = errorText { try Baker.bake(model: dir + "/fp8.safetensors", masks: maskFF, to: dir + "/fp8-baked.safetensors") }
        XCTAssertTrue(m.contains("tensor '\(fp8)' is F8_E4M3") && m.contains("F32, F16, BF16 and F64"), m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/fp8-baked.safetensors"))
        let maskOther = MaskFile(masks: [MaskSite(.ff, block: 0): (0..<192).map { $0 % 3 == 0 ? 0 : 1 }].sites)
        try Baker.bake(model: dir + "/fp8.safetensors", masks: maskOther, to: dir + "/fp8-baked.safetensors")
        XCTAssertEqual(try SafeTensorsFile(path: dir + "/fp8-baked.safetensors").info(fp8).dtype, .F8_E4M3)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["fp8.safetensors", "fp8-baked.safetensors"])
    }
}
