import Foundation
import XCTest
@testable import Imaging
import World

final class PNGTests: XCTestCase {
    func testWriteReadRoundTripExact() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = WorldRNG(seed: 1)
        let (w, h) = (37, 19)
        let rgb = (0..<3 * w * h).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let path = dir + "/sub/noise.png"
        try PNG.write(rgb: rgb, width: w, height: h, to: path)
        let back = try PNG.read(path: path)
        XCTAssertEqual(back.width, w)
        XCTAssertEqual(back.height, h)
        XCTAssertEqual(back.rgb, rgb)
        let head = try Data(contentsOf: URL(fileURLWithPath: path)).prefix(8)
        XCTAssertEqual([UInt8](head), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        // No temporary files left behind; overwriting works.
        try PNG.write(rgb: rgb.reversed(), width: w, height: h, to: path)
        XCTAssertEqual(try PNG.read(path: path).rgb, rgb.reversed())
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/sub"), ["noise.png"])
        // Float images go through rgb8.
        let (f, _) = try Datasets.load(.test)
        let scene = SceneRenderer.render(mask: f.image(0), object: Vocabulary.colors[3], background: Vocabulary.colors[2])
        try PNG.write(scene, to: dir + "/scene.png")
        XCTAssertEqual(try PNG.read(path: dir + "/scene.png").rgb, scene.rgb8())
        XCTAssertEqual(try PNG.readImage(path: dir + "/scene.png").rgb8(), scene.rgb8())
    }

    func testErrors() throws {
        XCTAssertThrowsError(try PNG.write(rgb: [1, 2], width: 1, height: 1, to: "/tmp/x.png"))
        XCTAssertThrowsError(try PNG.read(path: "/nonexistent/a.png")) { e in XCTAssertTrue("\(e)".contains("file not found")) }
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: dir + "/bad.png"))
        XCTAssertThrowsError(try PNG.read(path: dir + "/bad.png")) { e in XCTAssertTrue("\(e)".contains("libpng"), "\(e)") }
    }

    func testImageGridWithLabels() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (f, a) = try Datasets.load(.test)
        let sampler = try SceneSampler(fashion: f, animal: a, wording: .heldOutBoth, seed: 5)
        let scenes = sampler.scenes(0..<10)
        let grid = ImageGrid(columns: 5, scale: 4, gap: 4, labelLines: 3)
        let img = grid.render(scenes.map(\.image), labels: scenes.map(\.caption.text))
        XCTAssertEqual(img.width, 4 + 5 * (128 + 4))
        XCTAssertEqual(img.height, 4 + 2 * (128 + 3 * 8 + 2 + 4))
        // Cell (row 1, col 2) holds scene 7, enlarged 4×.
        let y0 = 4 + (128 + 26 + 4), x0 = 4 + 2 * (128 + 4)
        for (y, x) in [(0, 0), (17, 93), (127, 127)] {
            for c in 0..<3 { XCTAssertEqual(img[c, y0 + y, x0 + x], scenes[7].image[c, y / 4, x / 4]) }
        }
        // The label area has ink, the gap none.
        let label = (0..<26).flatMap { dy in (0..<128).map { dx in img[0, 4 + 128 + dy, 4 + dx] } }
        XCTAssertTrue(label.contains(0))
        XCTAssertTrue((0..<img.height).allSatisfy { img[1, $0, 1] == 1 })
        let path = dir + "/grid.png"
        try grid.write(scenes.map(\.image), labels: scenes.map(\.caption.text), to: path)
        XCTAssertEqual(try PNG.read(path: path).rgb, img.rgb8())
        let side = try String(contentsOfFile: dir + "/grid.txt", encoding: .utf8)
        XCTAssertEqual(side.split(separator: "\n").count, 10)
        XCTAssertTrue(side.hasPrefix("0 0 \(scenes[0].caption.text)\n"))
        // Without labels: no sidecar, no label strip.
        try ImageGrid(columns: 3, scale: 1, gap: 2).write(scenes.map(\.image), to: dir + "/plain.png")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/plain.txt"))
        let plain = try PNG.read(path: dir + "/plain.png")
        XCTAssertEqual(plain.width, 2 + 3 * 34)
        XCTAssertEqual(plain.height, 2 + 4 * 34)
    }

    func testFontWrap() {
        XCTAssertEqual(Font5x7.wrap("a red sneaker on a blue background", maxChars: 21, maxLines: 2),
                       ["a red sneaker on a", "blue background"])
        XCTAssertEqual(Font5x7.wrap("one two three four", maxChars: 7, maxLines: 2), ["one two", "three.."])
        XCTAssertEqual(Font5x7.width(of: "abc"), 17)
        XCTAssertEqual(Font5x7.glyph("a"), Font5x7.glyph("A"))
        XCTAssertEqual(Font5x7.glyph("~"), Font5x7.glyph("?"))
        for (ch, g) in Font5x7.glyphs {
            XCTAssertEqual(g.count, 7, "\(ch)")
            XCTAssertTrue(g.allSatisfy { $0.count == 5 }, "\(ch)")
        }
    }
}
