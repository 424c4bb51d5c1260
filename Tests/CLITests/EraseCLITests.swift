import Foundation
import SafeTensors
import XCTest

/// `mce erase` and `mce masks` as a user runs them: a short real run on the committed base model, and the
/// clear errors bad arguments get.
extension CLITests {
    var repoRoot: URL { Self.golden.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
    var baseModel: String { repoRoot.appendingPathComponent("models/base").path }

    func testEraseBadInput() throws {
        let out = dir.appendingPathComponent("e").path
        let common = ["erase", "--model", baseModel, "--out", out, "--iterations", "1", "--eval-prompts", "0"]
        func fails(_ extra: [String], _ message: String, exit: Int32 = 1, line: UInt = #line) throws {
            let r = try mce(common + extra, expectExit: exit, line: line)
            XCTAssertTrue(r.err.contains(message), "expected '\(message)' in: \(r.err)", line: line)
        }
        try fails(["--concept", "cat", "--sites", "ffn"], "unknown site 'ffn'")
        try fails(["--concept", "cat", "--sites", "transformer_blocks.7.ff"], "does not exist")
        try fails(["--concept", "cat", "--beta=-1"], "--beta must be ≥ 0", exit: 64)
        try fails(["--concept", "cat", "--steps", "0"], "must be ≥ 1", exit: 64)
        try fails(["--concept", "cat", "--adam-eps", "0"], "--adam-eps must be > 0", exit: 64)
        try fails(["--concept", "cat", "--eval-per-class", "0"], "--eval-per-class must be ≥ 1", exit: 64)
        try fails(["--concept", "cat", "--lr-schedule", "linear"], "--lr-schedule must be constant or cosine")
        try fails(["--concept", "cat", "--binary-finish", "5", "--binarise", "top-site:0.9"], "--binary-finish needs --binarise threshold")
        try fails(["--concept", "cat", "--binary-finish", "2"], "--binary-finish must be between 0 and the iterations (1), got 2")
        try fails(["--concept", "cat", "--method", "prune"], "--method must be one of mask, per-step, finetune, esd")
        try fails(["--concept", "cat", "--sites", "text_encoder.encoder.layer.9.intermediate"], "the text encoder has 6 layers")
        try fails(["--concept", "cat", "--sites", "ff,text_ff", "--method", "finetune"], "mask method only")
        try fails(["--concept", "cat", "--sites", "ff", "--text-preserve", "1"], "--text-preserve needs text-encoder sites")
        try fails(["--concept", "cat", "--sites", "ff", "--unit-cost", "1"], "--unit-cost needs text-encoder sites")
        try fails(["--concept", "cat", "--unit-cost=-1"], "--unit-cost must be ≥ 0", exit: 64)
        try fails(["--concept", "cat", "--text-ablation", "half"], "--text-ablation must be zero or mean")
        try fails(["--concept", "cat", "--restarts", "0"], "--restarts must be ≥ 1", exit: 64)
        try fails(["--concept", "cat", "--restarts", "2", "--method", "esd"], "--restarts is for mask methods")
        try fails(["--concept", "cat", "--retries=-1"], "--retries must be ≥ 0", exit: 64)
        try fails(["--concept", "cat", "--broken-factor=-1"], "--broken-factor must be ≥ 0", exit: 64)
        try fails(["--concept", "cat", "--sites", "ff", "--text-ablation", "mean"], "--text-ablation mean needs text-encoder sites")
        try fails(["--concept", "cat", "--concept", "dog", "--target", "nearest"], "--target nearest takes one --concept")
        try fails(["--concept", "cat", "--sites", "text_ff", "--text-preserve=-1"], "--text-preserve must be ≥ 0", exit: 64)
        try fails(["--concept", "ꙮ"], "unknown")   // a character MiniLM's vocabulary lacks, in every generated prompt
        let prompts = dir.appendingPathComponent("p.txt").path
        try "a red dog on a blue background\n".write(toFile: prompts, atomically: true, encoding: .utf8)
        try fails(["--concept", "cat", "--prompts", prompts], "does not mention the concept")
        let file = dir.appendingPathComponent("plain").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try mce(["erase", "--model", baseModel, "--concept", "cat", "--out", file + "/sub", "--iterations", "1"], expectExit: 1)
        XCTAssertTrue(r.err.contains("--out"), r.err)
        let m = try mce(["erase", "--model", dir.appendingPathComponent("nothing").path, "--concept", "cat", "--out", out], expectExit: 1)
        XCTAssertTrue(m.err.contains("nothing"), m.err)
    }

    /// Two iterations through a 2-step sampler on the committed model: mask file, baked checkpoint in the input's
    /// layout (loadable by `mce sample`-style commands), resume, merge.
    func testEraseEndToEnd() throws {
        let out = dir.appendingPathComponent("erase").path
        // No retries here (the retry of a broken run is checked below): at lr 4 two steps break prompts.
        let base = ["erase", "--model", baseModel, "--concept", "bag", "--out", out, "--iterations", "2", "--steps", "2",
                    "--concept-prompts", "2", "--neutral-prompts", "2", "--eval-prompts", "0", "--lr", "4"]
        let args = base + ["--retries", "0"]
        let r = try mce(args)
        XCTAssertTrue(r.out.contains("masked"), r.out)
        let masks = try SafeTensorsFile(path: out + "/masks.safetensors")
        XCTAssertEqual(masks.metadata["concept"], "bag")
        XCTAssertNotNil(masks.metadata["base_model_sha256"])
        XCTAssertTrue(masks.contains("transformer_blocks.0.ff.logits") && masks.contains("transformer_blocks.1.norm1_context.mask"))
        // The default sites are the authors' and the text encoder's units, with the text-preservation term at γ 3
        // and binarisation at λ > 0.5.
        XCTAssertTrue(masks.contains("text_encoder.encoder.layer.5.intermediate.logits"))
        XCTAssertFalse(masks.contains("transformer_blocks.0.attn.add_k_proj.logits"))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        XCTAssertEqual((report["options"] as? [String: Any])?["textPreserve"] as? Double, 3)
        XCTAssertEqual(masks.metadata["binarisation"], "threshold:0.5")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/text_encoder/model.safetensors"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/model/config.json"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/model/diffusion_pytorch_model.safetensors"))
        let logits = try masks.doubles("transformer_blocks.0.ff.logits")
        XCTAssertTrue(logits.contains { $0 != 3 }, "the logits moved")
        // The same arguments give the same masks; --resume at the end changes nothing.
        let again = dir.appendingPathComponent("again").path
        try mce(args.map { $0 == out ? again : $0 })
        XCTAssertEqual(try SafeTensorsFile(path: again + "/masks.safetensors").doubles("transformer_blocks.0.ff.logits"), logits)
        try mce(args + ["--resume"])
        XCTAssertEqual(try SafeTensorsFile(path: out + "/masks.safetensors").doubles("transformer_blocks.0.ff.logits"), logits)
        // --restarts 2 binarises the mean logits of the seed-0 run (the one above) and a seed-1 run, as `mce masks
        // average` of the two files does; each run resumes from its own state file.
        let seed1 = dir.appendingPathComponent("seed1").path, both = dir.appendingPathComponent("restarts").path
        try mce(args.map { $0 == out ? seed1 : $0 } + ["--seed", "1"])
        try mce(args.map { $0 == out ? both : $0 } + ["--restarts", "2"])
        let l1 = try SafeTensorsFile(path: seed1 + "/masks.safetensors").doubles("transformer_blocks.0.ff.logits")
        XCTAssertNotEqual(l1, logits, "another seed, other logits")
        let avg = try SafeTensorsFile(path: both + "/masks.safetensors")
        XCTAssertEqual(avg.metadata["seed"], "0,1")
        let mean = try avg.doubles("transformer_blocks.0.ff.logits")
        for (j, m) in mean.enumerated() { XCTAssertEqual(m, (logits[j] + l1[j]) / 2, accuracy: 1e-6) }
        XCTAssertEqual(try avg.doubles("transformer_blocks.0.ff.mask"), mean.map { $0 > 0.5 ? 1 : 0 })
        XCTAssertTrue(FileManager.default.fileExists(atPath: both + "/state-2.safetensors"))
        let averaged = dir.appendingPathComponent("averaged.safetensors").path
        try mce(["masks", "average", out + "/masks.safetensors", seed1 + "/masks.safetensors", "--binarise", "threshold:0.5", "--out", averaged])
        for name in ["transformer_blocks.0.ff.logits", "text_encoder.encoder.layer.2.intermediate.logits", "transformer_blocks.1.norm1_context.mask"] {
            XCTAssertEqual(try SafeTensorsFile(path: averaged).doubles(name), try avg.doubles(name), name)
        }
        try mce(args.map { $0 == out ? both : $0 } + ["--restarts", "2", "--resume"])
        XCTAssertEqual(try SafeTensorsFile(path: both + "/masks.safetensors").doubles("transformer_blocks.0.ff.logits"), mean)
        // The training check: report.json has one per run. At --broken-factor 0 every prompt the masks move is
        // broken, so --retries 1 trains seed 1 as well and keeps the run with fewer broken prompts (then the
        // lower objective): its mask file is that seed's own run.
        func checks(_ folder: String) throws -> (checks: [[String: Any]], kept: Int?) {
            let r = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/report.json"))) as! [String: Any]
            return (r["checks"] as! [[String: Any]], r["keptRun"] as? Int)
        }
        let first = try checks(out)
        XCTAssertEqual(first.checks.count, 1)
        XCTAssertEqual(first.kept, 0)
        XCTAssertEqual((first.checks[0]["items"] as! [[String: Any]]).count, 4)
        XCTAssertEqual(try checks(both).kept, nil, "averaged runs: none kept alone")
        XCTAssertEqual(try checks(both).checks.count, 2)
        let retried = dir.appendingPathComponent("retried").path
        let rr = try mce(base.map { $0 == out ? retried : $0 } + ["--broken-factor", "0", "--retries", "1"])
        XCTAssertTrue(rr.err.contains("training again with seed 1"), rr.err)
        let (cs, kept) = try checks(retried)
        XCTAssertEqual(cs.map { $0["seed"] as! Int }, [0, 1])
        let key = cs.map { ($0["items"] as! [[String: Any]]).filter { $0["broken"] as! Bool }.count }
        let objective = cs.map { $0["objective"] as! Double }
        let best = (key[1], objective[1]) < (key[0], objective[0]) ? 1 : 0
        XCTAssertEqual(kept, best)
        let keptFile = try SafeTensorsFile(path: retried + "/masks.safetensors")
        XCTAssertEqual(keptFile.metadata["seed"], "\(best)")
        XCTAssertEqual(try keptFile.doubles("transformer_blocks.0.ff.logits"), best == 0 ? logits : l1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: retried + "/state-2.safetensors"))
        // Merge two mask files and bake the result.
        let merged = dir.appendingPathComponent("merged.safetensors").path
        try mce(["masks", "merge", out + "/masks.safetensors", again + "/masks.safetensors", "--out", merged])
        try mce(["masks", "bake", "--masks", merged, "--model", baseModel, "--out", dir.appendingPathComponent("baked").path])
        try mce(["info", "--model", dir.appendingPathComponent("baked").path])
        // The report of the erased model, from the erase folder and from the baked checkpoint, in one run.
        let ev = dir.appendingPathComponent("evaluate").path
        let e = try mce(["evaluate", "--model", baseModel, "--masks", out, "--compare", dir.appendingPathComponent("baked").path,
                         "--samples", "1", "--per-class", "1", "--steps", "2", "--real-scenes", "4", "--out", ev])
        XCTAssertTrue(e.out.contains("concept ACC, training templates"), e.out)
        for f in ["report.json", "report.html", "summary.md", "grid-neutral.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: ev + "/" + f), f)
        }
    }

    /// Text-encoder sites end to end: the mask file holds them, OUT/text_encoder is the baked MiniLM, and
    /// `mce evaluate` measures the masks and the baked pair (checkpoint + text encoder beside it) identically.
    func testTextEncoderSitesEndToEnd() throws {
        let out = dir.appendingPathComponent("erase-text").path
        let r = try mce(["erase", "--model", baseModel, "--concept", "bag", "--out", out, "--iterations", "2", "--steps", "2",
                         "--sites", "ff_context,text_ff", "--concept-prompts", "2", "--neutral-prompts", "2", "--lr", "4",
                         "--eval-prompts", "1", "--eval-per-class", "2", "--retries", "0",
                         "--binarise", "top-site:0.8"])   // two iterations mask nothing by threshold; this masks 20% per site
        XCTAssertTrue(r.out.contains("baked text encoder: \(out)/text_encoder"), r.out)
        let masks = try SafeTensorsFile(path: out + "/masks.safetensors")
        XCTAssertTrue(masks.contains("text_encoder.encoder.layer.5.intermediate.logits") && masks.contains("transformer_blocks.1.ff_context.mask"))
        XCTAssertTrue(try masks.doubles("text_encoder.encoder.layer.0.intermediate.logits").contains { $0 != 3 }, "the text logits moved")
        XCTAssertEqual(try masks.doubles("text_encoder.encoder.layer.3.intermediate.mask").filter { $0 == 0 }.count, 307)
        for f in ["model.safetensors", "vocab.txt"] { XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/text_encoder/" + f), f) }
        // `mce masks bake` writes the same erased text encoder beside its output.
        let bk = dir.appendingPathComponent("bk").path
        try FileManager.default.createDirectory(atPath: bk, withIntermediateDirectories: true)
        let b = try mce(["masks", "bake", "--masks", out + "/masks.safetensors", "--model", baseModel, "--out", bk + "/model"])
        XCTAssertTrue(b.out.contains("text-encoder masks into \(bk)/text_encoder"), b.out)
        XCTAssertEqual(FileManager.default.contents(atPath: bk + "/text_encoder/model.safetensors"),
                       FileManager.default.contents(atPath: out + "/text_encoder/model.safetensors"))
        let ev = dir.appendingPathComponent("evaluate-text").path
        let e = try mce(["evaluate", "--model", baseModel, "--masks", out, "--compare", out + "/model", "--samples", "1", "--per-class", "1",
                         "--steps", "2", "--real-scenes", "4", "--out", ev])
        XCTAssertTrue(e.err.contains("using the erased text encoder"), e.err)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ev + "/report.json"))) as! [String: Any]
        let runs = report["runs"] as! [[String: Any]]
        XCTAssertEqual(runs.count, 2)
        XCTAssertEqual(runs[0]["metrics"] as? NSDictionary, runs[1]["metrics"] as? NSDictionary, "masked and baked measure the same")
        // The evaluation counts the text-encoder units with the transformer's, as the erase report does.
        let erase = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        let cost = runs[0]["cost"] as! [String: Any]
        XCTAssertEqual(cost["maskedUnits"] as? Int, erase["maskedUnits"] as? Int)
        XCTAssertEqual((cost["maskedPerSite"] as? [String: Int])?["text_encoder.encoder.layer.3.intermediate"], 307)
        // The erase run's own evaluation used the asked-for sizes: 1 prompt per concept set, 2 per neutral class.
        let own = erase["evaluation"] as! [String: Any]
        XCTAssertEqual((own["protocol"] as? [String: Any])?["perClass"] as? Int, 2)
        let ownMetrics = (own["runs"] as! [[String: Any]])[0]["metrics"] as! [String: Any]
        XCTAssertEqual((ownMetrics["neutral"] as? [String: Any])?["prompts"] as? Int, 2 * 19)
        let sets = ownMetrics["conceptSets"] as! [[String: Any]]
        XCTAssertEqual(sets.map { $0["name"] as? String }.last, "erase training prompts")
        for set in sets {
            let detected = set["detected"] as! [[String: Any]], n = set["prompts"] as! Int
            XCTAssertEqual(Double(detected.count) / Double(n), set["detectionRate"] as! Double, accuracy: 1e-12)
        }
    }

    func testEvaluateBadInput() throws {
        let out = dir.appendingPathComponent("ev").path
        func fails(_ args: [String], _ message: String, exit: Int32 = 1, line: UInt = #line) throws {
            let r = try mce(["evaluate", "--model", baseModel, "--out", out] + args, expectExit: exit, line: line)
            XCTAssertTrue(r.err.contains(message), "expected '\(message)' in: \(r.err)", line: line)
        }
        try fails([], "give --masks FILE, --erased PATH or --compare", exit: 64)
        try fails(["--masks", dir.appendingPathComponent("none.safetensors").path], "none.safetensors does not exist")
        let junk = dir.appendingPathComponent("junk.safetensors").path
        try "not safetensors".write(toFile: junk, atomically: true, encoding: .utf8)
        try fails(["--masks", junk], "neither a mask file nor")
        try fails(["--erased", junk, "--concept", "cat"], "not a loadable checkpoint")
        try fails(["--erased", baseModel, "--concept", "unicorn"], "the detector measures the world's classes only")
        try fails(["--erased", baseModel], "give --concept")
        try fails(["--erased", baseModel, "--concept", "cat", "--attacks", "jailbreak"], "--attacks must be all or", exit: 64)
    }

    /// A weight method end to end: ESD writes a fine-tuned diffusers folder (no mask file), which `mce evaluate`
    /// reads from the erase folder, with an attack in the report.
    func testWeightMethodEndToEnd() throws {
        let out = dir.appendingPathComponent("esd").path
        let r = try mce(["erase", "--model", baseModel, "--concept", "bag", "--method", "esd", "--out", out, "--iterations", "2",
                         "--steps", "2", "--concept-prompts", "2", "--neutral-prompts", "2", "--eval-prompts", "0"])
        XCTAssertTrue(r.out.contains("fine-tuned checkpoint (4 tensors trained)"), r.out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/masks.safetensors"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/model/config.json"))
        let ev = dir.appendingPathComponent("esd-eval").path
        let e = try mce(["evaluate", "--model", baseModel, "--compare", out, "--concept", "bag", "--samples", "1", "--per-class", "1",
                         "--steps", "2", "--real-scenes", "4", "--attacks", "paraphrase", "--out", ev])
        XCTAssertTrue(e.out.contains("esd:"), e.out)
        XCTAssertTrue(e.out.contains("attack paraphrase: ASR"), e.out)
        let summary = try String(contentsOfFile: ev + "/summary.md", encoding: .utf8)
        XCTAssertTrue(summary.contains("attack success rate, paraphrase"), summary)
    }
}
