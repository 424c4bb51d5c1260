import BaseModel
import Flux
import Foundation
import SafeTensors
import TextEncoder
import World
import XCTest

@testable import Erasure

/// Text-encoder mask sites in mask files, binarisation and the baked text encoder.
final class TextEncoderSiteTests: XCTestCase {
    static let encoder: PromptEncoder? = try? PromptEncoder()

    func binary(_ n: Int, seed: Int) -> [Float] { (0..<n).map { ($0 * 7 + seed) % 5 == 0 ? 0 : 1 } }

    func testMaskFileRoundTripAndMerge() throws {
        let dir = try BakeFixtures.tempDir(self)
        let logits: [Int: [Float]] = [2: (0..<1536).map { Float($0 % 9) - 4 }]
        let file = MaskFile(logits: logits.textSites,
                            masks: [MaskSite(.ff, block: 0): [1, 0, 1]].sites.merging([2: logits[2]!.map { $0 > 0 ? 1 : 0 }].textSites) { a, _ in a },
                            metadata: ["concept": "cat"])
        let path = dir + "/m.safetensors"
        try file.write(to: path)
        let names = try SafeTensorsFile(path: path).names
        XCTAssertTrue(names.contains("text_encoder.encoder.layer.2.intermediate.mask"), "\(names)")
        let back = try MaskFile.read(path)
        XCTAssertEqual(back.textMasks, file.textMasks)
        XCTAssertEqual(back.logits, file.logits)
        XCTAssertEqual(back.masks, file.masks)
        XCTAssertEqual(back.allMaskedCounts.last?.site, "text_encoder.encoder.layer.2.intermediate")
        XCTAssertEqual(back.allMaskedCounts.last?.masked, file.textMasks[2]!.filter { $0 == 0 }.count)

        let other = MaskFile(masks: [2: binary(1536, seed: 1), 5: binary(1536, seed: 3)].textSites, metadata: ["concept": "dog"])
        let merged = try MaskFile.merge([file, other])
        XCTAssertEqual(merged.textMasks[2]!, zip(file.textMasks[2]!, other.textMasks[2]!).map { $0 * $1 })
        XCTAssertEqual(merged.textMasks[5]!, other.textMasks[5]!)

        var bad = file
        bad.masks[.textEncoder(layer: 2)]![4] = 0.5
        XCTAssertTrue(errorText { try bad.write(to: dir + "/bad.safetensors") }.contains("only 0 or 1"))
    }

    /// `--target nearest`: the world class whose name MiniLM embeds closest to the concept's, never the concept's
    /// own class (for ankle boot the evaluation's ripple table ranks sneaker first by the same similarity).
    func testNearestClassAnchor() throws {
        let m = try XCTUnwrap(Self.encoder, "MiniLM not found: run scripts/fetch_minilm.sh").miniLM
        let boot = try ErasureTarget.nearestClass(to: try ConceptSpec.resolve("ankle boot"), encoder: m)
        XCTAssertEqual(boot.name, "sneaker")
        let cat = try ErasureTarget.nearestClass(to: try ConceptSpec.resolve("cat"), encoder: m)
        XCTAssertNotEqual(cat.name, "cat")
        for cls in Vocabulary.classes where cls.name != "cat" && cls.name != cat.name {
            let p = (try m.encode(cls.name).pooled, try m.encode("cat").pooled)
            let s = zip(p.0, p.1).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            XCTAssertLessThanOrEqual(s, cat.similarity + 1e-6, cls.name)
        }
        // `resolve` is the one place "nearest" is understood; `parse` alone refuses it rather than taking it as an anchor word.
        let bootSpec = try ConceptSpec.resolve("ankle boot")
        let r = try ErasureTarget.resolve(" Nearest", concepts: [bootSpec], encoder: m)
        XCTAssertEqual(r.target, .anchor("sneaker"))
        XCTAssertEqual(r.nearest?.similarity ?? 0, boot.similarity, accuracy: 1e-12)
        let d = try ErasureTarget.resolve("deconcept", concepts: [bootSpec], encoder: m)
        XCTAssertEqual(d.target, .deconcept)
        XCTAssertNil(d.nearest)
        XCTAssertEqual(try ErasureTarget.resolve("a red hat", concepts: [bootSpec], encoder: m).target, .anchor("a red hat"))
        XCTAssertThrowsError(try ErasureTarget.parse("nearest"))
        XCTAssertThrowsError(try ErasureTarget.resolve("nearest", concepts: [bootSpec, try ConceptSpec.resolve("cat")], encoder: m))
    }

    func testBinarisationRanksTextUnitsWithTheRest() {
        let site = MaskSite(.ff, block: 0)
        let m = Binarisation.topGlobal(0.5).apply([.transformer(site): [4, 3, -1, -2], .textEncoder(layer: 0): [2, 1, -3, 0]])
        XCTAssertEqual(m[.transformer(site)]!, [1, 1, 0, 0])
        XCTAssertEqual(m[.textEncoder(layer: 0)]!, [1, 1, 0, 0])
        let m2 = Binarisation.threshold(0).apply([.transformer(site): [4, -3], .textEncoder(layer: 1): [-1, 2]])
        XCTAssertEqual(m2[.transformer(site)]!, [1, 0])
        XCTAssertEqual(m2[.textEncoder(layer: 1)]!, [0, 1])
    }

    /// The baked copy of MiniLM (zeroed down-projection columns) encodes exactly what the masked encoder
    /// computes, and `MaskFile.textEncoder` gives an encoder that applies the masks.
    func testBakedTextEncoderEqualsMaskedEncoder() throws {
        let base = try XCTUnwrap(Self.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        let masks = [1: binary(1536, seed: 2), 4: binary(1536, seed: 4)]
        let dir = try BakeFixtures.tempDir(self), dest = dir + "/text_encoder"
        try TextEncoderBaker.bake(source: base.miniLM.directory, masks: masks, to: dest)
        let baked = try MiniLM(directory: dest)
        let erased = try XCTUnwrap(try MaskFile(masks: masks.textSites).textEncoder(base: base))
        XCTAssertEqual(erased.paddedLength, base.paddedLength)
        for prompt in ["a red ankle boot on a blue background", "kitten"] {
            let ids = try base.miniLM.tokenIds(prompt)
            let b = try baked.encode(tokenIds: ids), m = try erased.miniLM.encode(tokenIds: ids)
            XCTAssertEqual(b.hiddenStates, m.hiddenStates, prompt)
            XCTAssertEqual(b.pooled, m.pooled, prompt)
            XCTAssertNotEqual(b.hiddenStates, try base.miniLM.encode(tokenIds: ids).hiddenStates, "the masks change the encoding")
        }
        XCTAssertNotNil(try SafeTensorsFile(path: dest + "/model.safetensors").metadata[Baker.markerKey])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dest + "/vocab.txt"))
        // A second bake replaces the first; a folder that is not a bake is refused.
        try TextEncoderBaker.bake(source: base.miniLM.directory, masks: [0: binary(1536, seed: 0)], to: dest)
        try FileManager.default.createDirectory(atPath: dir + "/other", withIntermediateDirectories: true)
        XCTAssertTrue(errorText { try TextEncoderBaker.bake(source: base.miniLM.directory, masks: masks, to: dir + "/other") }
            .contains("not a baked text encoder"))
        XCTAssertTrue(errorText { try TextEncoderBaker.bake(source: base.miniLM.directory, masks: [1: [1, 0.5]], to: dest) }
            .contains("binary"))
    }

    /// Mean ablation: the baked copy (zeroed columns, the fill folded into the bias) encodes what the masked
    /// encoder with fill computes, up to float rounding; the fill travels in the mask file and through merges.
    func testMeanAblationBakesAndTravelsInMaskFiles() throws {
        let base = try XCTUnwrap(Self.encoder, "MiniLM not found: run scripts/fetch_minilm.sh")
        let m = base.miniLM
        let masks = [1: binary(1536, seed: 2), 4: binary(1536, seed: 4)]
        let captions = ["a red dress on a blue background", "a photo of a green kitten", "two sandals"]
        let means = try m.meanFeedForwardActivations(batch: captions.map { try m.tokenIds($0) })
        let fill = [1: means[1]!, 4: means[4]!]
        let dir = try BakeFixtures.tempDir(self)
        let file = MaskFile(masks: masks.textSites, fill: fill.textSites, metadata: ["concept": "cat"])
        try file.write(to: dir + "/m.safetensors")
        let back = try MaskFile.read(dir + "/m.safetensors")
        XCTAssertEqual(back.textFill, fill)
        try TextEncoderBaker.bake(source: m.directory, masks: masks, fill: fill, to: dir + "/te")
        let baked = try MiniLM(directory: dir + "/te")
        let erased = try XCTUnwrap(try back.textEncoder(base: base)).miniLM
        let zeroed = try XCTUnwrap(try MaskFile(masks: masks.textSites).textEncoder(base: base)).miniLM
        for prompt in ["a red ankle boot on a blue background", "kitten"] {
            let ids = try m.tokenIds(prompt)
            let b = try baked.encode(tokenIds: ids), e = try erased.encode(tokenIds: ids)
            XCTAssertLessThanOrEqual(maxAbsDiff(b.hiddenStates, e.hiddenStates), 2e-5, prompt)
            XCTAssertGreaterThan(maxAbsDiff(e.hiddenStates, try zeroed.encode(tokenIds: ids).hiddenStates), 1e-2, "fill is not zero ablation")
        }
        // Merging: a unit closed by one file keeps that file's fill; closed by two with different fills is refused.
        let other = MaskFile(masks: [1: binary(1536, seed: 3)].textSites, metadata: ["concept": "dog"])
        let merged = try MaskFile.merge([back, other])
        let j = (0..<1536).first { masks[1]![$0] == 0 && other.textMasks[1]![$0] == 1 }!
        XCTAssertEqual(merged.textFill[1]![j], fill[1]![j])
        XCTAssertTrue(errorText { _ = try MaskFile.merge([back, MaskFile(masks: masks.textSites)]) }.contains("different fill values"))
        let same = try MaskFile.merge([back, back])
        for l in [1, 4] {
            XCTAssertEqual(same.textFill[l]!, masks[l]!.indices.map { masks[l]![$0] == 0 ? fill[l]![$0] : 0 }, "layer \(l)")
        }
    }

    private func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }
}
