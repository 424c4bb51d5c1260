import Foundation
import XCTest
@testable import World

final class SceneTests: XCTestCase {
    let red = Vocabulary.colors[Vocabulary.colorIndex(named: "red")!]
    let blue = Vocabulary.colors[Vocabulary.colorIndex(named: "blue")!]

    func testAlphaMatchesPythonReference() throws {
        let fx = try Fixture.load()
        let (fashion, _) = try Datasets.load(.train)
        let file = try IDXArray.read(path: AnimalMNIST.files().images)
        for r in fx.render {
            let mask: ArraySlice<UInt8> = r.image == "fashion-train"
                ? fashion.image(r.index) : file.data[r.index * 784 ..< (r.index + 1) * 784]
            let a = SceneRenderer.alpha(mask: mask, placement: Placement(scale: r.scale, dx: r.dx, dy: r.dy))
            XCTAssertEqual(Double(a.reduce(0, +)), r.alphaSum, accuracy: 1e-2, "\(r.image) \(r.index) s=\(r.scale)")
            for p in r.probes {
                XCTAssertEqual(Double(a[Int(p[0]) * 32 + Int(p[1])]), p[2], accuracy: 1e-4, "probe \(p)")
            }
        }
    }

    func testRenderingCorrectness() throws {
        let (fashion, _) = try Datasets.load(.train)
        let mask = fashion.image(0)
        let img = SceneRenderer.render(mask: mask, object: red, background: blue)
        // Identity placement copies the mask into rows/columns 2…29.
        let (o, b) = (red.rgb, blue.rgb)
        var checkedZero = 0
        for y in 0..<32 {
            for x in 0..<32 {
                let inside = (2..<30).contains(y) && (2..<30).contains(x)
                let m = inside ? Float(mask[mask.startIndex + (y - 2) * 28 + x - 2]) / 255 : 0
                if m == 0 {
                    XCTAssertEqual(img[0, y, x], b.0); XCTAssertEqual(img[1, y, x], b.1); XCTAssertEqual(img[2, y, x], b.2)
                    checkedZero += 1
                }
                XCTAssertEqual(img[0, y, x], b.0 * (1 - m) + o.0 * m, accuracy: 1e-6)
                XCTAssertEqual(img[2, y, x], b.2 * (1 - m) + o.2 * m, accuracy: 1e-6)
            }
        }
        XCTAssertGreaterThan(checkedZero, 100)
        // The brightest mask pixel is (close to) the object colour.
        let k = mask.indices.max { mask[$0] < mask[$1] }!
        let (my, mx) = ((k - mask.startIndex) / 28 + 2, (k - mask.startIndex) % 28 + 2)
        XCTAssertEqual(mask[k], 255)
        XCTAssertEqual(img[0, my, mx], o.0, accuracy: 1e-6)
        XCTAssertEqual(img[1, my, mx], o.1, accuracy: 1e-6)
        XCTAssertEqual(img[2, my, mx], o.2, accuracy: 1e-6)
        // A random placement keeps the corners (far from the object) pure background.
        var rng = WorldRNG(seed: 5)
        let moved = SceneRenderer.render(mask: mask, object: red, background: blue, placement: .random(&rng))
        XCTAssertEqual(moved.rgb8()[0..<3], [40, 80, 220])
    }

    func testPlacementShiftAndScale() {
        var mask = [UInt8](repeating: 0, count: 784)
        mask[10 * 28 + 10] = 255
        let shifted = SceneRenderer.alpha(mask: mask, placement: Placement(scale: 1, dx: 2, dy: -1))
        XCTAssertEqual(shifted[(10 + 2 - 1) * 32 + 10 + 2 + 2], 1)
        XCTAssertEqual(shifted.reduce(0, +), 1, accuracy: 1e-6)
        // Bilinear weights: a half-pixel shift spreads the dot over two pixels.
        let half = SceneRenderer.alpha(mask: mask, placement: Placement(scale: 1, dx: 0.5, dy: 0))
        XCTAssertEqual(half[12 * 32 + 12], 0.5, accuracy: 1e-6)
        XCTAssertEqual(half[12 * 32 + 13], 0.5, accuracy: 1e-6)
        // A full mask at scale 0.8 covers about 0.8² of 28² pixels.
        let full = SceneRenderer.alpha(mask: [UInt8](repeating: 255, count: 784), placement: Placement(scale: 0.8))
        XCTAssertEqual(full.reduce(0, +), 0.64 * 784, accuracy: 30)
    }

    func testSamplerDeterminismBalanceAndWording() throws {
        let (f, a) = try Datasets.load(.train)
        let s1 = try SceneSampler(fashion: f, animal: a, seed: 42)
        let s2 = try SceneSampler(fashion: f, animal: a, seed: 42)
        let s3 = try SceneSampler(fashion: f, animal: a, seed: 43)
        let x = s1.scenes(0..<60), y = s2.scenes(0..<60)
        XCTAssertEqual(x.map { $0.image.rgb8() }, y.map { $0.image.rgb8() }, "same seed, same bytes")
        XCTAssertEqual(x.map(\.caption), y.map(\.caption))
        XCTAssertEqual(s1.scene(37).image, x[37].image, "random access equals sequential")
        XCTAssertNotEqual(s3.scenes(0..<60).map(\.caption), x.map(\.caption))
        for block in 0..<3 {
            XCTAssertEqual(Set(x[block * 20 ..< block * 20 + 20].map(\.classID)), Set(0..<20), "each block of 20 has each class once")
        }
        for sc in s1.scenes(0..<400) {
            XCTAssertFalse(sc.caption.heldOut)
            XCTAssertTrue(Vocabulary.allowedPair(object: sc.objColor, background: sc.bgColor))
            XCTAssertTrue(Placement.scaleRange.contains(sc.placement.scale))
            XCTAssertLessThanOrEqual(abs(sc.placement.dx), 2)
            let ds = sc.source == .fashionMNIST ? f : a
            XCTAssertEqual(Vocabulary.classID(source: sc.source, label: ds.label(sc.datasetIndex)), sc.classID)
            XCTAssertEqual(ds.sourceIndices[sc.datasetIndex], sc.sourceIndex)
        }
        XCTAssertThrowsError(try SceneSampler(fashion: f, animal: a, wording: .heldOutSynonyms, seed: 1)) { e in
            XCTAssertTrue("\(e)".contains("train split uses training wording only"), "\(e)")
        }
        let (tf, ta) = try Datasets.load(.test)
        XCTAssertThrowsError(try SceneSampler(fashion: f, animal: ta, seed: 1))
        for w in CaptionWording.allCases {
            let t = try SceneSampler(fashion: tf, animal: ta, wording: w, seed: 7)
            for sc in t.scenes(0..<100) {
                XCTAssertEqual(sc.caption.templateHeldOut, w.heldOutTemplate, "\(w) \(sc.caption.text)")
                XCTAssertEqual(sc.caption.synonymHeldOut, w.heldOutSynonym, "\(w) \(sc.caption.text)")
            }
        }
    }

    func testLatentPackingRoundTripAndLayout() throws {
        var rng = WorldRNG(seed: 3)
        let img = RGBImage(width: 32, height: 32, data: (0..<3072).map { _ in Float(rng.uniform()) })
        let t = SceneLatent.tokens(from: img)
        XCTAssertEqual(t.count, 64 * 48)
        XCTAssertEqual(SceneLatent.tokenCount(width: 32, height: 32), 64)
        XCTAssertTrue(t.allSatisfy { $0 >= -1 && $0 <= 1 })
        // The documented index formula.
        for r in 0..<8 { for q in 0..<8 { for c in 0..<3 { for ey in 0..<2 { for ex in 0..<2 { for dy in 0..<2 { for dx in 0..<2 {
            let tok = r * 8 + q, f = (c * 4 + ey * 2 + ex) * 4 + dy * 2 + dx
            let y = 4 * r + 2 * dy + ey, x = 4 * q + 2 * dx + ex
            XCTAssertEqual(t[tok * 48 + f], 2 * img[c, y, x] - 1)
        } } } } } } }
        let back = SceneLatent.image(fromTokens: t)
        for i in 0..<3072 { XCTAssertEqual(back.data[i], img.data[i], accuracy: 1e-6) }
        // Exact on 8-bit images (k/255 survives 2v−1 and back to within rounding).
        let (f, _) = try Datasets.load(.train)
        let s = SceneRenderer.render(mask: f.image(3), object: blue, background: red, placement: Placement(scale: 0.9, dx: 1, dy: -1))
        XCTAssertEqual(SceneLatent.image(fromTokens: SceneLatent.tokens(from: s)).rgb8(), s.rgb8())
        // Space-to-depth alone and batching.
        let s2d = SceneLatent.spaceToDepth(img.data, channels: 3, height: 32, width: 32)
        XCTAssertEqual(s2d[(1 * 4 + 1 * 2 + 0) * 256 + 5 * 16 + 7], img[1, 11, 14])  // ch = c·4 + ey·2 + ex
        XCTAssertEqual(SceneLatent.depthToSpace(s2d, channels: 3, height: 32, width: 32), img.data)
        XCTAssertEqual(SceneLatent.tokens(from: [img, s]).count, 2 * 64 * 48)
    }

    func testRenderTiming() throws {
        let (f, a) = try Datasets.load(.train)
        let s = try SceneSampler(fashion: f, animal: a, seed: 11)
        let n = 2000
        let t0 = Date()
        var acc: Float = 0
        for i in 0..<n { acc += s.scene(i).image.data[100] }
        let dt = Date().timeIntervalSince(t0)
        print(String(format: "World: rendered %d scenes in %.3f s (%.1f µs each, checksum %.3f)", n, dt, dt / Double(n) * 1e6, acc))
    }
}
