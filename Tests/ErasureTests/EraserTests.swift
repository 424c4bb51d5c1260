import BaseModel
import BLAS
@testable import Erasure
import Evaluation
import Flux
import Foundation
import SafeTensors
import TextEncoder
import World
import XCTest

private let fixtureRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// The pieces of the erasure objective: the mask relaxation, guided backprop through the sampler, prompts,
/// and the optimisation loop (gradients vs finite differences, determinism, resume).
final class EraserTests: XCTestCase {
    static let encoder: PromptEncoder? = try? PromptEncoder()

    // MARK: relaxation

    func testHardConcreteMatchesTheAuthorsTable() {
        let hc = MaskRelaxation.authors
        func range(_ l: Double) -> (Double, Double) {
            let v = stride(from: 0.0, through: 1.0, by: 0.001).map { hc.sample(logit: l, u: $0).mask }
            return (v.min()!, v.max()!)
        }
        // method.md §2.2: λ = 3 → [0.9897, 1], m(u = ½) = 1; λ = 0 → [0.152, 0.848], ½; λ = 1 → ½ gives 0.823.
        XCTAssertEqual(range(3).0, 0.9897, accuracy: 1e-3); XCTAssertEqual(range(3).1, 1)
        XCTAssertEqual(hc.expected(logit: 3), 1)
        XCTAssertEqual(range(0).0, 0.152, accuracy: 1e-3); XCTAssertEqual(range(0).1, 0.848, accuracy: 1e-3)
        XCTAssertEqual(hc.expected(logit: 0), 0.5, accuracy: 1e-12)
        XCTAssertEqual(hc.expected(logit: 1), 0.823, accuracy: 1e-3)
        XCTAssertEqual(range(-3.1).1, 0)
        XCTAssertEqual(range(-1).1, 0.536, accuracy: 1e-3)
    }

    func testRelaxationDerivativesMatchFiniteDifferences() {
        for r in [MaskRelaxation.authors, .sigmoid] {
            for (l, u) in [(0.3, 0.2), (-0.7, 0.9), (1.5, 0.5), (2.2, 0.1)] {
                let h = 1e-6
                let fd = (r.sample(logit: l + h, u: u).mask - r.sample(logit: l - h, u: u).mask) / (2 * h)
                XCTAssertEqual(r.sample(logit: l, u: u).dLogit, fd, accuracy: 1e-6, "\(r) λ \(l) u \(u)")
            }
        }
        XCTAssertEqual(MaskRelaxation.authors.sample(logit: 5, u: 0.5).dLogit, 0, "saturated: no gradient")
    }

    func testBinarisation() throws {
        let s0 = MaskSite(.ff, block: 0), s1 = MaskSite(.ffContext, block: 0)
        let logits: [Site: [Float]] = [.transformer(s0): [2, -1, 0.5, -3], .transformer(s1): [0, 4, -0.1, 1]]
        XCTAssertEqual(try Binarisation.parse("threshold").apply(logits)[.transformer(s0)], [1, 0, 1, 0])
        XCTAssertEqual(try Binarisation.parse("threshold:0").apply(logits)[.transformer(s1)], [0, 1, 0, 1])
        XCTAssertEqual(try Binarisation.parse("top-site:0.5").apply(logits)[.transformer(s0)], [1, 0, 1, 0])
        let g = try Binarisation.parse("top-global:0.25").apply(logits)
        XCTAssertEqual(g[.transformer(s0)], [1, 0, 0, 0]); XCTAssertEqual(g[.transformer(s1)], [0, 1, 0, 0])
        XCTAssertThrowsError(try Binarisation.parse("top-site:0")) { XCTAssertTrue("\($0)".contains("--binarise")) }
        XCTAssertThrowsError(try Binarisation.parse("median"))
        // Defaults: the authors' λ > 0 on transformer sites alone, λ > 0.5 once the text encoder's units are masked.
        XCTAssertEqual(ErasureOptions.defaultBinarisation(textEncoderSites: false), try Binarisation.parse("threshold:0"))
        XCTAssertEqual(ErasureOptions.defaultBinarisation(textEncoderSites: true).apply(logits)[.transformer(s0)], [1, 0, 0, 0])
    }

    // MARK: SSIM against torchmetrics

    func testSSIMMatchesTorchmetrics() throws {
        let f = try SafeTensorsFile(path: fixtureRoot.appendingPathComponent("erasure/ssim.safetensors").path)
        let ref = try f.doubles("ssim")
        for i in ref.indices {
            let a = RGBImage(width: 32, height: 32, data: try f.doubles("a.\(i)").map(Float.init))
            let b = RGBImage(width: 32, height: 32, data: try f.doubles("b.\(i)").map(Float.init))
            XCTAssertEqual(SSIM.mean(a, b), ref[i], accuracy: 1e-5, "pair \(i)")
        }
    }

    // MARK: guided backprop through the sampler

    /// With classifier-free guidance, the checkpointed gradient w.r.t. mask values and x_T equals central
    /// finite differences of the guided sampler's loss (float64).
    func testGuidedSamplerGradientMatchesFiniteDifferences() throws {
        let cfg = BaseModelSpec.config(width: 64, headDim: 32, doubleBlocks: 1, singleBlocks: 1)
        let model = FluxTransformer(weights: FluxWeights<Double>.random(config: cfg, seed: 3))
        var rng = SplitMix64(seed: 11)
        let B = 2, Lt = 5, Li = BaseModelSpec.tokens, C = cfg.inChannels
        let ehs = Buffer<Double>((0..<(2 * B * Lt * 384)).map { _ in rng.normal() })
        let pooled = Buffer<Double>((0..<(2 * B * 384)).map { _ in rng.normal() * 0.1 })
        let cond = try FluxConditioning(config: cfg, batch: 2 * B, encoderHiddenStates: ehs, pooledProjections: pooled, guidance: nil,
                                        txtIds: Packing.textIds(count: Lt), imgIds: BaseModelSpec.imageIds)
        let start = Buffer<Double>((0..<(B * Li * C)).map { _ in rng.normal() })
        let target = Buffer<Double>((0..<(B * Li * C)).map { _ in rng.normal() * 0.5 })
        let sites = [MaskSite(.ff, block: 0), MaskSite(.norm1Context, block: 0), MaskSite(.projMLP, block: 0)]
        var masks = MaskSet<Double>()
        for s in sites { masks[s] = Buffer((0..<s.width(cfg)).map { _ in 0.5 + rng.uniform() }) }
        let schedule = try FlowMatchSchedule(steps: 3, shift: .none)
        func loss(_ m: MaskSet<Double>, _ x: Buffer<Double>) throws -> Double {
            let s = CheckpointedSampler(transformer: model, cond: cond, schedule: schedule, masks: m, guidanceScale: 2.5)
            return try Objectives.meanSquaredError(target: target)(try s.sample(start: x)).loss
        }
        let sampler = CheckpointedSampler(transformer: model, cond: cond, schedule: schedule, masks: masks, guidanceScale: 2.5)
        let r = try sampler.gradient(start: start, maskGradients: sites, objective: Objectives.meanSquaredError(target: target))
        XCTAssertEqual(r.loss, try loss(masks, start), accuracy: 1e-12)
        let h = 1e-5
        for s in sites {
            for j in [0, 7, s.width(cfg) - 1] {
                let orig = masks[s]![j]
                masks[s]![j] = orig + h; let lp = try loss(masks, start)
                masks[s]![j] = orig - h; let lm = try loss(masks, start)
                masks[s]![j] = orig
                let fd = (lp - lm) / (2 * h)
                XCTAssertEqual(r.grads.masks[s]![j], fd, accuracy: 1e-7 + 1e-5 * abs(fd), "\(s)[\(j)]")
            }
        }
        for j in [0, 100, start.count - 1] {
            let orig = start[j]
            start[j] = orig + h; let lp = try loss(masks, start)
            start[j] = orig - h; let lm = try loss(masks, start)
            start[j] = orig
            XCTAssertEqual(r.grads.hidden[j], (lp - lm) / (2 * h), accuracy: 1e-8, "x_T[\(j)]")
        }
    }

    // MARK: prompts

    func testWorldPrompts() throws {
        let cat = try ConceptSpec.resolve("kitten")
        XCTAssertEqual(cat.name, "cat"); XCTAssertEqual(cat.classID, Vocabulary.classID(named: "cat"))
        XCTAssertTrue(cat.phrases.contains("feline"), "held-out synonyms name the concept too")
        let items = try ErasurePrompts.world(concepts: [cat], conceptCount: 20, neutralCount: 20, target: .deconcept, seed: 1)
        XCTAssertEqual(items.filter(\.isConcept).count, 20); XCTAssertEqual(items.filter { !$0.isConcept }.count, 20)
        XCTAssertTrue(items[0].isConcept); XCTAssertFalse(items[1].isConcept, "interleaved")
        for it in items {
            XCTAssertEqual(cat.isMentioned(in: it.prompt), it.isConcept, it.prompt)
            if it.isConcept {
                XCTAssertFalse(cat.isMentioned(in: it.targetPrompt), it.targetPrompt)
                XCTAssertTrue(it.targetPrompt.contains("object"), it.targetPrompt)
                XCTAssertTrue(it.targetPrompt.contains(Vocabulary.colors[it.bgColor!].name), "background colour stays")
            } else {
                XCTAssertEqual(it.targetPrompt, it.prompt)
            }
        }
        XCTAssertEqual(Set(items.map(\.seed)).count, items.count, "one noise seed per prompt")
        XCTAssertEqual(try ErasurePrompts.world(concepts: [cat], conceptCount: 20, neutralCount: 20, target: .deconcept, seed: 1), items)
        let null = try ErasurePrompts.world(concepts: [cat], conceptCount: 3, neutralCount: 0, target: .null, seed: 1)
        XCTAssertEqual(null.map(\.targetPrompt), ["", "", ""])
        let dog = try ErasurePrompts.world(concepts: [cat], conceptCount: 3, neutralCount: 0, target: .anchor("dog"), seed: 1)
        XCTAssertTrue(dog.allSatisfy { $0.targetPrompt.contains("dog") })
        XCTAssertEqual(cat.replacing(in: "an orange kitten on a gray background", with: "object"), "an orange object on a gray background")
        XCTAssertEqual(cat.replacing(in: "a kitten, blue background", with: "elephant"), "an elephant, blue background")
        let free = try ConceptSpec.resolve("Spaceship", synonyms: ["rocket"])
        XCTAssertNil(free.classID)
        XCTAssertTrue(free.isMentioned(in: "a red rocket on a blue background"))
        XCTAssertFalse(free.isMentioned(in: "a red rocketeer"))
    }

    /// Unequal counts spread evenly: every batch of 4 from 20 concept and 60 neutral prompts holds one concept
    /// prompt (not 2 + 2 for half an epoch, then neutral prompts only); 40 and 20 give c n c c n c …; every item once.
    func testPromptsSpreadEvenlyWithUnequalCounts() throws {
        let cat = try ConceptSpec.resolve("cat")
        let items = try ErasurePrompts.world(concepts: [cat], conceptCount: 20, neutralCount: 60, target: .deconcept, seed: 3)
        XCTAssertEqual(items.count, 80)
        for b in stride(from: 0, to: 80, by: 4) {
            XCTAssertEqual(items[b..<b + 4].map(\.isConcept), [true, false, false, false], "batch at \(b)")
        }
        let both = try ErasurePrompts.world(concepts: [cat], conceptCount: 40, neutralCount: 20, target: .deconcept, seed: 3)
        XCTAssertEqual(both.prefix(6).map(\.isConcept), [true, false, true, true, false, true])
        XCTAssertEqual(both.filter(\.isConcept).count, 40)
        XCTAssertEqual(Set(both.map(\.seed)).count, 60, "each prompt once")
        let none = try ErasurePrompts.world(concepts: [cat], conceptCount: 5, neutralCount: 0, target: .deconcept, seed: 3)
        XCTAssertEqual(none.count, 5)
    }

    func testPromptFileErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mce-prompts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cat = try ConceptSpec.resolve("cat")
        let good = dir.appendingPathComponent("c.txt").path, bad = dir.appendingPathComponent("bad.txt").path
        let neutral = dir.appendingPathComponent("n.txt").path
        try "# concept prompts\na cat on a red background\n\na gray kitten\n".write(toFile: good, atomically: true, encoding: .utf8)
        try "a cat\na dog on a red background\n".write(toFile: bad, atomically: true, encoding: .utf8)
        try "a dog\na kitty\n".write(toFile: neutral, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ErasurePrompts.files(conceptFile: good, neutralFile: nil, concepts: [cat], target: .deconcept, seed: 0).count, 2)
        XCTAssertThrowsError(try ErasurePrompts.files(conceptFile: bad, neutralFile: nil, concepts: [cat], target: .deconcept, seed: 0)) {
            XCTAssertTrue("\($0)".contains("line 2") && "\($0)".contains("does not mention"), "\($0)")
        }
        XCTAssertThrowsError(try ErasurePrompts.files(conceptFile: good, neutralFile: neutral, concepts: [cat], target: .deconcept, seed: 0)) {
            XCTAssertTrue("\($0)".contains("line 2") && "\($0)".contains("mentions the concept"), "\($0)")
        }
        XCTAssertThrowsError(try ErasurePrompts.files(conceptFile: dir.appendingPathComponent("none").path, neutralFile: nil,
                                                      concepts: [cat], target: .deconcept, seed: 0)) {
            XCTAssertTrue("\($0)".contains("cannot read prompt file"), "\($0)")
        }
    }

    func testSiteSelection() throws {
        let cfg = BaseModelSpec.config(width: 64, doubleBlocks: 2, singleBlocks: 1)
        XCTAssertEqual(try ErasureOptions.expandSites(["ff,ff_context,norm1_context"], config: cfg, textEncoderLayers: 6).map(\.description),
                       ["transformer_blocks.0.ff", "transformer_blocks.1.ff", "transformer_blocks.0.ff_context",
                        "transformer_blocks.1.ff_context", "transformer_blocks.0.norm1_context", "transformer_blocks.1.norm1_context"])
        XCTAssertEqual(try ErasureOptions.expandSites(["single_transformer_blocks.0.proj_mlp"], config: cfg, textEncoderLayers: 6),
                       [.transformer(MaskSite(.projMLP, block: 0))])
        XCTAssertThrowsError(try ErasureOptions.expandSites(["ffn"], config: cfg, textEncoderLayers: 6)) { XCTAssertTrue("\($0)".contains("unknown site 'ffn'")) }
        XCTAssertThrowsError(try ErasureOptions.expandSites(["transformer_blocks.5.ff"], config: cfg, textEncoderLayers: 6)) {
            XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
        }
        // Text-encoder sites: the kind expands to every MiniLM layer; names are checked against the layer count.
        var o = ErasureOptions()
        o.sites = try ErasureOptions.expandSites(["ff_context,text_ff"], config: cfg, textEncoderLayers: 3)
        XCTAssertEqual(o.sites.map(\.description), ["transformer_blocks.0.ff_context", "transformer_blocks.1.ff_context", "text_encoder.encoder.layer.0.intermediate",
                                 "text_encoder.encoder.layer.1.intermediate", "text_encoder.encoder.layer.2.intermediate"])
        XCTAssertEqual(o.textEncoderLayers, [0, 1, 2])
        XCTAssertEqual(try o.maskSites(config: cfg), [MaskSite(.ffContext, block: 0), MaskSite(.ffContext, block: 1)])
        XCTAssertEqual(try ErasureOptions.expandSites(["text_encoder.encoder.layer.5.intermediate"], config: cfg, textEncoderLayers: 6),
                       [.textEncoder(layer: 5)])
        // One key space: every name parses to one Site and back, and a state file's options decode to the same sites.
        for site in o.sites { XCTAssertEqual(Site(name: site.description), site) }
        XCTAssertNil(Site(name: "transformer_blocks.0.ffn"))
        let back = try JSONDecoder().decode(ErasureOptions.self, from: JSONEncoder().encode(o))
        XCTAssertEqual(back.sites, o.sites)
        XCTAssertThrowsError(try ErasureOptions.expandSites(["text_encoder.encoder.layer.6.intermediate"], config: cfg, textEncoderLayers: 6)) {
            XCTAssertTrue("\($0)".contains("the text encoder has 6 layers"), "\($0)")
        }
        XCTAssertNil(TextEncoderSite.layer(of: "text_encoder.encoder.layer.01.intermediate"))
    }

    // MARK: the loop

    func eraser(_ model: FluxTransformer<Float>, relaxation: MaskRelaxation = .authors, guidance: Double = 1,
                adamEps: Double? = nil) throws -> Eraser {
        let encoder = try XCTUnwrap(Self.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        var o = ErasureOptions()
        o.concepts = [try ConceptSpec.resolve("cat")]
        o.sites = try ErasureOptions.expandSites(["ff,ff_context,norm1_context"], config: model.config, textEncoderLayers: 6)
        o.samplingSteps = 3; o.iterations = 6; o.batch = 2; o.beta = 0.5; o.guidance = guidance; o.relaxation = relaxation
        o.lr = 0.5; o.seed = 4; o.adamEps = adamEps
        let items = try ErasurePrompts.world(concepts: o.concepts, conceptCount: 3, neutralCount: 3, target: o.target, seed: 4)
        return try Eraser(model: model, encoder: encoder, items: items, options: o)
    }

    func tinyModel() -> FluxTransformer<Float> {
        FluxTransformer(weights: FluxWeights<Float>.random(config: BaseModelSpec.config(width: 64, doubleBlocks: 1, singleBlocks: 1), seed: 9))
    }

    func testDeterministicResumableAndLearning() throws {
        let model = tinyModel()
        let a = try eraser(model), b = try eraser(model)
        var la: [Double] = [], lb: [Double] = []
        for _ in 0..<4 { la.append(try a.step().loss) }
        for _ in 0..<2 { lb.append(try b.step().loss) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mce-erase-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try b.saveState(to: path)
        let c = try eraser(model)
        try c.loadState(from: path)
        XCTAssertEqual(c.iteration, 2)
        for _ in 0..<2 { lb.append(try c.step().loss) }
        XCTAssertEqual(la, lb, "same seed, same losses, also across a saved state")
        XCTAssertEqual(a.logitArrays, c.logitArrays)
        XCTAssertNotEqual(a.logitArrays[.transformer(MaskSite(.ff, block: 0))]!, Array(repeating: 3, count: 256), "logits moved")
        // A state written with other options is refused.
        let other = try eraser(model, relaxation: .sigmoid)
        XCTAssertThrowsError(try other.loadState(from: path)) { XCTAssertTrue("\($0)".contains("different options"), "\($0)") }
    }

    /// AdamW's ε decides how far a small gradient moves a logit: at the default 1e-8 a unit moves at the full
    /// rate whatever its gradient's size; at ε far above the gradients (~1e-6–1e-4 here) only weight decay moves
    /// it. The option is part of the run's identity (a state written with another ε is refused), and options
    /// written before it existed still decode.
    func testAdamEpsilonSetsHowFarSmallGradientsMove() throws {
        let model = tinyModel()
        let start = Array(repeating: Float(3), count: 256)
        func maxMove(_ e: Eraser) -> Float {
            e.logitArrays.values.flatMap { zip($0, start).map { abs($0 - $1) } }.max()!
        }
        let plain = try eraser(model, relaxation: .sigmoid), damped = try eraser(model, relaxation: .sigmoid, adamEps: 1)
        for _ in 0..<2 { try plain.step(); try damped.step() }
        // Warm-up rates 0.1 and 0.2: full-speed Adam moves some logit by about 0.3; decay alone by 0.009.
        XCTAssertGreaterThan(maxMove(plain), 0.2)
        XCTAssertLessThan(maxMove(damped), 0.02)
        XCTAssertGreaterThan(maxMove(damped), 0.005, "weight decay still applies")

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mce-eps-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try plain.saveState(to: path)
        let other = try eraser(model, relaxation: .sigmoid, adamEps: 1e-5)
        XCTAssertThrowsError(try other.loadState(from: path)) { XCTAssertTrue("\($0)".contains("different options"), "\($0)") }

        var o = ErasureOptions()
        let json = String(decoding: try JSONEncoder().encode(o), as: UTF8.self)
        XCTAssertFalse(json.contains("adamEps"), "the default is not written, so older files and new ones agree")
        XCTAssertEqual(try JSONDecoder().decode(ErasureOptions.self, from: Data(json.utf8)).effectiveAdamEps, 1e-8)
        o.adamEps = 0
        XCTAssertThrowsError(try Eraser(model: model, encoder: XCTUnwrap(Self.encoder), items: [], options: o)) {
            XCTAssertTrue("\($0)".contains("--adam-eps"), "\($0)")
        }
    }

    /// The learning rate: linear warm-up, then constant (the authors') or a cosine decay reaching 0 at the last
    /// iteration; the default is not written, so older option files decode as constant.
    func testLearningRateSchedules() throws {
        var o = ErasureOptions()
        o.lr = 0.5; o.warmup = 5; o.iterations = 65
        for (it, rate) in [0.1, 0.2, 0.3, 0.4, 0.5].enumerated() { XCTAssertEqual(o.learningRate(at: it), rate, accuracy: 1e-12) }
        XCTAssertEqual(o.learningRate(at: 64), 0.5)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(o), as: UTF8.self).contains("lrSchedule"))
        o.lrSchedule = .cosine
        XCTAssertEqual(o.learningRate(at: 4), 0.5, accuracy: 1e-12, "the warm-up ends at the full rate")
        XCTAssertEqual(o.learningRate(at: 34), 0.25, accuracy: 1e-12, "half the rate half-way through the decay")
        XCTAssertEqual(o.learningRate(at: 64), 0, accuracy: 1e-12, "the last step does not move the logits")
        let rates = (4..<65).map { o.learningRate(at: $0) }
        XCTAssertEqual(rates, rates.sorted(by: >), "decays monotonically")
        let back = try JSONDecoder().decode(ErasureOptions.self, from: JSONEncoder().encode(o))
        XCTAssertEqual(back.lrSchedule, .cosine)
    }

    /// The binary finish: its steps run the binarised masks (λ > threshold) forward, so the loss is piecewise
    /// constant in the logits and changes only when a unit crosses the threshold, and their gradient is the
    /// straight-through one, d(loss)/d(mask) at the binary mask times the noise-free relaxation's derivative.
    func testBinaryFinishRunsTheBinarisedMasks() throws {
        let model = tinyModel()
        func finishing(threshold: Double? = nil, initLogit: Double = 3) throws -> Eraser {
            let e = try eraser(model)
            var o = e.options
            o.binaryFinish = 2; o.finishThreshold = threshold; o.initLogit = initLogit
            return try Eraser(model: model, encoder: e.encoder, items: e.items, options: o)
        }
        let e = try finishing()
        XCTAssertEqual((0..<6).map(e.options.isBinaryStep), [false, false, false, false, true, true])
        // Logits 3 keep every unit: the binary step's loss is the unmasked model's, which a relaxed step reaches
        // only with saturated logits (λ = 100 gives multipliers of exactly 1).
        var saturated = e.options
        saturated.binaryFinish = nil; saturated.initLogit = 100
        let reference = try Eraser(model: model, encoder: e.encoder, items: e.items, options: saturated)
        let l3 = try e.probe(iteration: 4).loss
        XCTAssertEqual(l3, try reference.probe(iteration: 4).loss, accuracy: 1e-12)
        XCTAssertNotEqual(l3, try e.probe(iteration: 3).loss, "a relaxed step draws noisy multipliers")
        XCTAssertEqual(try e.probe(iteration: 4, parameter: 1, element: 7, delta: -2.9).loss, l3, "λ 0.1 still keeps the unit")
        XCTAssertNotEqual(try e.probe(iteration: 4, parameter: 1, element: 7, delta: -3.1).loss, l3, "λ −0.1 masks it")
        XCTAssertNotEqual(try finishing(threshold: 3.5).probe(iteration: 4).loss, l3, "a threshold above the logits masks every unit")
        // Every unit kept at λ 0.5 and at λ 1.5: the same d(loss)/d(mask), times each λ's derivative.
        let hc = MaskRelaxation.authors
        let a = try finishing(initLogit: 0.5).probe(iteration: 4, parameter: 1, element: 0, delta: 0)
        let b = try finishing(initLogit: 1.5).probe(iteration: 4, parameter: 1, element: 0, delta: 0)
        XCTAssertEqual(a.loss, l3, accuracy: 1e-12)
        let ratio = hc.sample(logit: 0.5, u: 0.5).dLogit / hc.sample(logit: 1.5, u: 0.5).dLogit
        XCTAssertGreaterThan(ratio, 1.5)
        XCTAssertGreaterThan(a.grads[1].map { abs($0) }.max()!, 0)
        for (x, y) in zip(a.grads[1], b.grads[1]) { XCTAssertEqual(Double(x), Double(y) * ratio, accuracy: 1e-4 * abs(Double(x)) + 1e-12) }
        // The option is part of the options file only when set, and is range-checked.
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(ErasureOptions()), as: UTF8.self).contains("binaryFinish"))
        var bad = e.options
        bad.binaryFinish = 7
        XCTAssertThrowsError(try Eraser(model: model, encoder: e.encoder, items: e.items, options: bad)) {
            XCTAssertTrue("\($0)".contains("--binary-finish"), "\($0)")
        }
        bad = e.options
        bad.finishThreshold = .infinity
        XCTAssertThrowsError(try Eraser(model: model, encoder: e.encoder, items: e.items, options: bad)) {
            XCTAssertTrue("\($0)".contains("finite threshold"), "\($0)")
        }
    }

    /// The logit gradient the loop feeds AdamW equals finite differences of the whole objective (erase + β·preserve
    /// through the guided sampler), with the deterministic sigmoid relaxation. The loop's first step is plain
    /// sign-like Adam, so this is checked through a probe that reads the loss at perturbed logits.
    func testObjectiveGradientMatchesFiniteDifferences() throws {
        let model = tinyModel()
        let e = try eraser(model, relaxation: .sigmoid, guidance: 2)
        let site = Site.transformer(MaskSite(.ffContext, block: 0))
        let (l0, g) = try e.probe(iteration: 0)
        XCTAssertTrue(l0 > 0)
        let h: Float = 1e-2
        for j in [0, 5, 100] {
            let fd = (try e.probe(iteration: 0, perturb: (site, j, h)).loss - (try e.probe(iteration: 0, perturb: (site, j, -h)).loss)) / Double(2 * h)
            XCTAssertEqual(Double(g[site]![j]), fd, accuracy: 2e-3 * max(abs(fd), 1e-4) + 1e-7, "\(site)[\(j)]")
        }
    }
}

/// The baselines share the harness: their gradients are checked against finite differences of their own
/// objectives, their runs are deterministic and resumable, and the in-memory mask folding equals masking.
final class ErasureMethodTests: XCTestCase {
    static let encoder: PromptEncoder? = try? PromptEncoder()

    func tinyModel() -> FluxTransformer<Float> {
        FluxTransformer(weights: FluxWeights<Float>.random(config: BaseModelSpec.config(width: 64, doubleBlocks: 1, singleBlocks: 1), seed: 9))
    }

    func eraser(_ model: FluxTransformer<Float>, method: ErasureMethod, guidance: Double = 2) throws -> Eraser {
        let encoder = try XCTUnwrap(Self.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        var o = ErasureOptions()
        o.method = method
        o.concepts = [try ConceptSpec.resolve("cat")]
        o.sites = try ErasureOptions.expandSites(["ff,ff_context,norm1_context"], config: model.config, textEncoderLayers: 6)
        o.samplingSteps = 3; o.iterations = 6; o.batch = 2; o.beta = 0.5; o.guidance = guidance; o.relaxation = .sigmoid
        o.lr = method.defaultLearningRate; o.seed = 4
        o.initLogit = 0     // masks at ½: the masked model is far from the original, so the loss is well above rounding
        let items = try ErasurePrompts.world(concepts: o.concepts, conceptCount: 3, neutralCount: 3, target: o.target, seed: 4)
        return try Eraser(model: model, encoder: encoder, items: items, options: o)
    }

    /// Text-encoder sites: the logit gradient of MiniLM feed-forward masks — through the guided sampler, the
    /// transformer's text inputs (hidden states and pooled embedding, the null prompt's rows included) and the
    /// encoder — equals finite differences; runs with them are deterministic and resumable; other methods refuse them.
    func testTextEncoderSiteGradientMatchesFiniteDifferencesAndResumes() throws {
        let model = tinyModel(), encoder = try XCTUnwrap(Self.encoder)
        // A random model hardly reads the pooled embedding; a stronger pooled path makes its gradient count.
        let pooledIn = model.weights.top.textLinear1.w
        for i in 0..<pooledIn.count { pooledIn[i] *= 30 }
        func make(_ sites: String, method: ErasureMethod = .mask, textPreserve: Double? = nil) throws -> Eraser {
            var o = ErasureOptions()
            o.method = method
            o.textPreserve = textPreserve; o.textPreservePrompts = 4
            o.concepts = [try ConceptSpec.resolve("cat")]
            o.sites = try ErasureOptions.expandSites([sites], config: model.config, textEncoderLayers: encoder.miniLM.layerCount)
            o.samplingSteps = 3; o.iterations = 6; o.batch = 2; o.beta = 0.5; o.guidance = 2; o.relaxation = .sigmoid
            o.lr = 0.5; o.seed = 4; o.initLogit = 0
            let items = try ErasurePrompts.world(concepts: o.concepts, conceptCount: 3, neutralCount: 3, target: o.target, seed: 4)
            return try Eraser(model: model, encoder: encoder, items: items, options: o)
        }
        // With the text-preservation term (γ 0.3 on 4 neutral captions' encoder outputs) in the objective too.
        let e = try make("ff_context,text_encoder.encoder.layer.1.intermediate,text_encoder.encoder.layer.4.intermediate", textPreserve: 0.3)
        XCTAssertEqual(e.transformerSites, [MaskSite(.ffContext, block: 0)])
        XCTAssertEqual(e.textLayers, [1, 4])
        XCTAssertEqual(e.sites, [.transformer(MaskSite(.ffContext, block: 0)), .textEncoder(layer: 1), .textEncoder(layer: 4)])
        XCTAssertEqual(e.textAnchors.count, 4)
        let plain = try make("ff_context,text_encoder.encoder.layer.1.intermediate,text_encoder.encoder.layer.4.intermediate")
        XCTAssertGreaterThan(try e.probe(iteration: 1, parameter: 0, element: 0, delta: 0).loss,
                             try plain.probe(iteration: 1, parameter: 0, element: 0, delta: 0).loss, "the term adds to the loss")
        // The term is γ·[mean over the captions + the null prompt], each D = mean squared change of the hidden
        // states and of the pooled embedding as the transformer reads them (through the context embedder and the
        // pooled embedding's first layer): the null prompt weighs as much as all captions together.
        let m = encoder.miniLM, top = model.weights.top
        var rng = SplitMix64(seed: 9)
        let someMasks = Dictionary(uniqueKeysWithValues: [1, 4].map { l in (l, (0..<m.intermediateSize).map { _ in Float(rng.uniform()) }) })
        func read(_ x: [Float], _ y: [Float], _ lin: LinearWeights<Float>) -> Double {
            let rows = x.count / lin.inDim
            var s = 0.0
            for r in 0..<rows {
                for o in 0..<lin.outDim {
                    var v = 0.0
                    for i in 0..<lin.inDim { v += Double(lin.w[o * lin.inDim + i]) * Double(x[r * lin.inDim + i] - y[r * lin.inDim + i]) }
                    s += v * v
                }
            }
            return s / Double(rows * lin.outDim)
        }
        func change(_ ids: [[Int]]) throws -> [Double] {
            let (masked, _) = try m.encode(batch: ids, feedForwardMasks: someMasks)
            return zip(masked, try m.encode(batch: ids)).map { a, b in
                read(a.hiddenStates, b.hiddenStates, top.contextEmbedder) + read(a.pooled, b.pooled, top.textLinear1)
            }
        }
        let captions = try change(e.textAnchors.map { try m.tokenIds($0) }), null = try change([[m.tokenizer.clsId, m.tokenizer.sepId]])[0]
        XCTAssertGreaterThan(null, 0)
        XCTAssertEqual(try e.textPreservation(masks: someMasks).loss, 0.3 * (captions.reduce(0, +) / 4 + null), accuracy: 1e-5 * null)
        // The units with the largest gradients (most are ~1e-5, below what Float differences resolve).
        let g = try e.probe(iteration: 1, parameter: 0, element: 0, delta: 0).grads
        for p in [1, 2] {
            let top = g[p].indices.sorted { abs(g[p][$0]) > abs(g[p][$1]) }.prefix(3)
            try checkGradient(e, parameter: p, elements: Array(top), h: 2e-2)
        }

        let a = try make("text_ff"), b = try make("text_ff")
        try a.prepareTargets(); try b.prepareTargets()
        var la: [Double] = [], lb: [Double] = []
        for _ in 0..<3 { la.append(try a.step().loss) }
        try b.step()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mce-text-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try b.saveState(to: path)
        let c = try make("text_ff")
        try c.loadState(from: path)
        try c.prepareTargets()
        lb.append(b.history[0].loss)
        for _ in 0..<2 { lb.append(try c.step().loss) }
        XCTAssertEqual(la, lb)
        XCTAssertEqual(a.logitArrays, c.logitArrays)
        XCTAssertNotEqual(a.logitArrays[.textEncoder(layer: 0)]!, Array(repeating: 0, count: 1536), "text logits moved")

        XCTAssertThrowsError(try make("ff,text_ff", method: .finetune)) { XCTAssertTrue("\($0)".contains("mask method only"), "\($0)") }
    }

    /// `--unit-cost`: each text-encoder unit's price w_j is what closing it alone changes the anchors' outputs by
    /// in the text-preservation measure, to first order (checked against that term's own value for small changes
    /// of one multiplier); the objective gains κ·Σ w_j(1 − m_j) over the step's draws, and its gradient matches
    /// finite differences.
    func testUnitCostPricesEachTextUnitByItsOwnChange() throws {
        let model = tinyModel(), encoder = try XCTUnwrap(Self.encoder)
        let pooledIn = model.weights.top.textLinear1.w
        for i in 0..<pooledIn.count { pooledIn[i] *= 30 }
        let layers = [1, 4], F = encoder.miniLM.intermediateSize, gamma = 0.3
        func make(unitCost: Double?) throws -> Eraser {
            var o = ErasureOptions()
            o.textPreserve = gamma; o.textPreservePrompts = 4; o.unitCost = unitCost
            o.concepts = [try ConceptSpec.resolve("cat")]
            o.sites = try ErasureOptions.expandSites(["ff_context" + layers.map { "," + TextEncoderSite.name(layer: $0) }.joined()],
                                                     config: model.config, textEncoderLayers: encoder.miniLM.layerCount)
            o.samplingSteps = 3; o.iterations = 6; o.batch = 2; o.beta = 0.5; o.guidance = 2; o.relaxation = .sigmoid
            o.lr = 0.5; o.seed = 4; o.initLogit = 0
            let items = try ErasurePrompts.world(concepts: o.concepts, conceptCount: 3, neutralCount: 3, target: o.target, seed: 4)
            return try Eraser(model: model, encoder: encoder, items: items, options: o)
        }
        let kappa = 40.0
        let e = try make(unitCost: kappa), plain = try make(unitCost: nil)

        // The prices against the term itself: with one multiplier at 1 ± h and the rest at 1, the term is
        // γ·h²·w_j + O(h⁴) on average over the two signs.
        let precise = try e.textUnitCosts(probes: 120)
        func exact(_ l: Int, _ j: Int) throws -> Double {
            let h: Float = 0.05
            func term(_ v: Float) throws -> Double {
                var masks = Dictionary(uniqueKeysWithValues: layers.map { ($0, [Float](repeating: 1, count: F)) })
                masks[l]![j] = v
                return try e.textPreservation(masks: masks).loss
            }
            return (try term(1 - h) + term(1 + h)) / 2 / (gamma * Double(h * h))
        }
        var rng = SplitMix64(seed: 3)
        var sumEstimate = 0.0, sumExact = 0.0
        for l in layers {
            let w = precise[l]!
            XCTAssertEqual(w.count, F)
            let largest = w.indices.sorted { w[$0] > w[$1] }.prefix(5)
            let others = (0..<5).map { _ in Int(rng.uniform() * Double(F)) }
            for j in Array(largest) + others {
                let x = try exact(l, j)
                XCTAssertGreaterThan(x, 0)
                XCTAssertEqual(Double(w[j]), x, accuracy: 0.4 * x, "layer \(l) unit \(j)")
                sumEstimate += Double(w[j]); sumExact += x
            }
        }
        XCTAssertEqual(sumEstimate, sumExact, accuracy: 0.08 * sumExact, "Hutchinson's estimate, summed over 20 units")
        // The run's own prices (32 probes) are the same estimator with fewer probes, and fixed by the seed.
        let w = try e.textUnitCosts(), again = try make(unitCost: kappa).textUnitCosts()
        XCTAssertEqual(w, again)
        let (run, ref) = (layers.flatMap { w[$0]! }.map(Double.init), layers.flatMap { precise[$0]! }.map(Double.init))
        XCTAssertEqual(run.reduce(0, +), ref.reduce(0, +), accuracy: 0.05 * ref.reduce(0, +))

        // The objective: the plain one plus κ·Σ w_j(1 − m_j) over this step's draws.
        let masks = e.sampledMasks(at: 1, logits: e.logits).masks.textLayers
        var price = 0.0
        for l in layers { for j in 0..<F { price += kappa * Double(w[l]![j]) * Double(1 - masks[l]![j]) } }
        let (withCost, g) = try e.probe(iteration: 1, parameter: 0, element: 0, delta: 0)
        let (without, g0) = try plain.probe(iteration: 1, parameter: 0, element: 0, delta: 0)
        XCTAssertGreaterThan(price, 0)
        XCTAssertEqual(withCost - without, price, accuracy: 1e-6 * withCost)
        // Its gradient, on the units it moves most, against finite differences of the whole objective.
        for p in [1, 2] {
            let moved = g[p].indices.sorted { abs(g[p][$0] - g0[p][$0]) > abs(g[p][$1] - g0[p][$1]) }.prefix(3)
            for j in moved { XCTAssertGreaterThan(abs(g[p][j] - g0[p][j]), 0.5 * abs(g0[p][j]), "the price dominates unit \(j)") }
            try checkGradient(e, parameter: p, elements: Array(moved), h: 2e-2)
        }
    }

    /// Central differences of the whole objective against the gradient the optimiser gets.
    func checkGradient(_ e: Eraser, parameter p: Int, elements: [Int], h: Float, file: StaticString = #filePath, line: UInt = #line) throws {
        let (l0, g) = try e.probe(iteration: 1, parameter: p, element: 0, delta: 0)
        XCTAssertTrue(l0 > 0, file: file, line: line)
        var checked = 0
        for j in elements {
            let fd = (try e.probe(iteration: 1, parameter: p, element: j, delta: h).loss
                      - (try e.probe(iteration: 1, parameter: p, element: j, delta: -h).loss)) / Double(2 * h)
            XCTAssertEqual(Double(g[p][j]), fd, accuracy: 3e-3 * max(abs(fd), 1e-4) + 1e-7, "\(e.options.method) parameter \(p)[\(j)]",
                           file: file, line: line)
            if abs(fd) > 1e-4 * l0 { checked += 1 }
        }
        XCTAssertGreaterThan(checked, 0, "every probed derivative was negligible: the check proves nothing", file: file, line: line)
    }

    func testPerStepGradientMatchesFiniteDifferences() throws {
        let e = try eraser(tinyModel(), method: .perStep)
        try checkGradient(e, parameter: 0, elements: [0, 5, 100], h: 1e-2)     // image ff logits
    }

    func testFinetuneGradientMatchesFiniteDifferences() throws {
        let e = try eraser(tinyModel(), method: .finetune)
        XCTAssertEqual(e.trainable.map(\.name), ["transformer_blocks.0.ff.net.0.proj.weight", "transformer_blocks.0.ff.net.0.proj.bias",
                                                 "transformer_blocks.0.ff.net.2.weight", "transformer_blocks.0.ff.net.2.bias",
                                                 "transformer_blocks.0.ff_context.net.0.proj.weight", "transformer_blocks.0.ff_context.net.0.proj.bias",
                                                 "transformer_blocks.0.ff_context.net.2.weight", "transformer_blocks.0.ff_context.net.2.bias",
                                                 "transformer_blocks.0.norm1_context.linear.weight", "transformer_blocks.0.norm1_context.linear.bias"])
        try checkGradient(e, parameter: 2, elements: [0, 77, 1000], h: 1e-2)     // ff.net.2.weight
        // The original stays untouched: the trained model is a copy.
        XCTAssertFalse(e.trained === e.model)
    }

    func testESDGradientMatchesFiniteDifferences() throws {
        let e = try eraser(tinyModel(), method: .esd)
        XCTAssertEqual(e.trainable.map(\.name), ["transformer_blocks.0.attn.add_qkv_proj.weight", "transformer_blocks.0.attn.add_qkv_proj.bias"])
        XCTAssertTrue(e.batch(at: 0).allSatisfy(\.item.isConcept), "ESD trains on concept prompts only")
        try checkGradient(e, parameter: 0, elements: [0, 300, 5000], h: 1e-2)
    }

    func testWeightMethodsAreDeterministicAndResumable() throws {
        let model = tinyModel()
        let before = try model.weights.residentCopy().allBuffers.map(\.array)
        for method in [ErasureMethod.esd, .finetune] {
            // As `mce erase` does: every target first, in one canonical batching. (Targets computed lazily
            // per optimiser step would come from different batches in a resumed run, and a row's GEMM
            // rounding can depend on its batch.)
            let a = try eraser(model, method: method), b = try eraser(model, method: method)
            try a.prepareTargets(); try b.prepareTargets()
            var la: [Double] = [], lb: [Double] = []
            for _ in 0..<3 { la.append(try a.step().loss) }
            lb.append(try b.step().loss)
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("mce-\(method)-\(UUID().uuidString).safetensors").path
            defer { try? FileManager.default.removeItem(atPath: path) }
            try b.saveState(to: path)
            let c = try eraser(model, method: method)
            try c.loadState(from: path)
            try c.prepareTargets()
            for _ in 0..<2 { lb.append(try c.step().loss) }
            XCTAssertEqual(la, lb, "\(method): same seed, same losses, also across a saved state")
            XCTAssertEqual(a.trainable.map(\.buffer.array), c.trainable.map(\.buffer.array))
            XCTAssertNotEqual(a.trainable[0].buffer.array, try TrainableLayers.select(model.weights, method: method, sites: a.transformerSites)[0].buffer.array,
                              "\(method): the weights moved")
        }
        XCTAssertEqual(model.weights.allBuffers.map(\.array), before, "the original model is never modified")
    }

    /// The training check samples every training prompt with the binary masks (transformer sites and text-encoder
    /// units) from its first-epoch noise: each item's error equals that of an independent run — the generator on
    /// the original model with the masks and a text encoder with its units switched off — against the original's
    /// sample of its target; unmasked, neutral errors are 0 and concept errors are their distance before erasing.
    func testTrainingCheckSamplesTheBinaryMasksOnTheTrainingPrompts() throws {
        let model = tinyModel(), encoder = try XCTUnwrap(Self.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        var o = ErasureOptions()
        o.concepts = [try ConceptSpec.resolve("cat")]
        o.sites = try ErasureOptions.expandSites(["ff,norm1_context,text_encoder.encoder.layer.2.intermediate"], config: model.config,
                                                 textEncoderLayers: encoder.miniLM.layerCount)
        o.samplingSteps = 3; o.iterations = 6; o.batch = 4; o.beta = 0.5; o.guidance = 2; o.seed = 4
        let items = try ErasurePrompts.world(concepts: o.concepts, conceptCount: 3, neutralCount: 2, target: o.target, seed: 4)
        let e = try Eraser(model: model, encoder: encoder, items: items, options: o)
        let cfg = model.config, gen = Generator(model: model, encoder: encoder, steps: 3, guidanceScale: 2)
        let targets = try gen.latents(prompts: items.map(\.targetPrompt), seeds: items.map(\.seed))
        func mse(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) } / Double(a.count) }

        let F = encoder.miniLM.intermediateSize
        let ones = Dictionary(uniqueKeysWithValues: e.sites.map { ($0, [Float](repeating: 1, count: $0.width(cfg, textUnits: F))) })
        let none = try e.check(masks: ones)
        XCTAssertEqual(none.items.map(\.prompt), items.map(\.prompt))
        XCTAssertFalse(none.items.contains { !$0.isConcept && $0.broken }, "unmasked, no neutral prompt moves")
        let originals = try gen.latents(prompts: items.map(\.prompt), seeds: items.map(\.seed))
        for (k, item) in none.items.enumerated() {
            let d = mse(originals[k], targets[k])
            XCTAssertEqual(item.loss, d, accuracy: 1e-6 * max(d, 1e-3), item.prompt)
            XCTAssertEqual(item.before, item.isConcept ? d : 0, accuracy: 1e-6 * max(d, 1e-3))
        }
        XCTAssertGreaterThan(none.erase, 1e-6, "concept prompts start away from their targets")

        var rng = SplitMix64(seed: 5)
        let transformerMasks = Dictionary(uniqueKeysWithValues: e.transformerSites.map { s in (s, (0..<s.width(cfg)).map { _ in Float(rng.uniform() < 0.4 ? 0 : 1) }) })
        let text = [2: (0..<encoder.miniLM.intermediateSize).map { _ in Float(rng.uniform() < 0.4 ? 0 : 1) }]
        let masks = transformerMasks.sites.merging(text.textSites) { a, _ in a }
        let c = try e.check(masks: masks)
        let erasedText = try MiniLM(directory: encoder.miniLM.directory)
        try erasedText.setFeedForwardMasks(text, fill: [:])
        let pe = PromptEncoder(miniLM: erasedText, paddedLength: encoder.paddedLength)
        var set = MaskSet<Float>()
        for (s, m) in transformerMasks { set[s] = Buffer(m) }
        let masked = try Generator(model: model, encoder: pe, steps: 3, guidanceScale: 2).latents(prompts: items.map(\.prompt), seeds: items.map(\.seed), masks: set)
        let expected = zip(masked, targets).map { mse($0, $1) }
        for (item, x) in zip(c.items, expected) { XCTAssertEqual(item.loss, x, accuracy: 1e-5 * x, item.prompt) }
        XCTAssertGreaterThan(c.preserve, 1e-6, "the masks move neutral samples")
        let concepts = c.items.filter(\.isConcept), neutral = c.items.filter { !$0.isConcept }
        XCTAssertEqual(c.erase, concepts.map(\.loss).reduce(0, +) / 3, accuracy: 1e-12)
        XCTAssertEqual(c.preserve, neutral.map(\.loss).reduce(0, +) / 2, accuracy: 1e-12)
        XCTAssertEqual(c.objective, c.erase + 0.5 * c.preserve, accuracy: 1e-12)
        XCTAssertEqual(c.brokenAbove, none.erase, accuracy: 1e-9, "the concept prompts' mean distance before erasing")
        for item in c.items {
            XCTAssertEqual(item.broken, item.loss > c.brokenAbove && item.loss > item.before, item.prompt)
        }
        // --broken-factor 0: every neutral prompt the masks move is broken.
        let strict = try e.check(masks: masks, brokenFactor: 0)
        XCTAssertEqual(strict.items.filter { !$0.isConcept }.map(\.broken), [true, true])
        XCTAssertThrowsError(try e.check(masks: masks, brokenFactor: -1)) { XCTAssertTrue("\($0)".contains("--broken-factor")) }
    }

    /// Folding binary masks into weights in memory gives the masked model's output (as the file baker does).
    func testMaskFoldingEqualsMasking() throws {
        let encoder = try XCTUnwrap(Self.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        let cfg = BaseModelSpec.config(width: 64, doubleBlocks: 1, singleBlocks: 1)
        let model = tinyModel()
        var masks = MaskSet<Float>()
        var rng = SplitMix64(seed: 3)
        for kind in MaskSite.Kind.allCases {
            let site = MaskSite(kind, block: 0)
            masks[site] = Buffer((0..<site.width(cfg)).map { _ in rng.uniform() < 0.3 ? 0 : 1 })
        }
        let cond = try encoder.conditioning([try encoder.encode("a red cat on a blue background")], config: cfg, imageIds: BaseModelSpec.imageIds)
        let x = Buffer<Float>(BaseModelSpec.noise(seed: 1))
        let masked = try model.forward(hidden: x.p, sigma: [0.6], cond: cond, masks: masks)
        let folded = try model.weights.residentCopy()
        try MaskFolding.fold(masks, into: folded)
        let out = try FluxTransformer(weights: folded).forward(hidden: x.p, sigma: [0.6], cond: cond)
        var maxDiff: Float = 0, scale: Float = 0
        for j in 0..<out.count { maxDiff = max(maxDiff, abs(out[j] - masked[j])); scale = max(scale, abs(masked[j])) }
        XCTAssertLessThan(maxDiff, 1e-5 * max(1, scale))
        let plain = try model.forward(hidden: x.p, sigma: [0.6], cond: cond)
        XCTAssertGreaterThan((0..<out.count).map { abs(out[$0] - plain[$0]) }.max()!, 1e-3, "the masks change the output")
        var notBinary = MaskSet<Float>()
        notBinary[MaskSite(.ff, block: 0)] = Buffer(Array(repeating: 0.5, count: cfg.mlpDim))
        XCTAssertThrowsError(try MaskFolding.fold(notBinary, into: folded)) { XCTAssertTrue("\($0)".contains("not binary")) }
    }
}
