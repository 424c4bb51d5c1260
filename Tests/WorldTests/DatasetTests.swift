import Foundation
import XCTest
@testable import World

final class DatasetTests: XCTestCase {
    func testFashionMNISTCountsBalanceAndChecksums() throws {
        let fx = try Fixture.load()
        for split in Split.allCases {
            let ds = split == .train ? try Datasets.load(.train).fashion : try Datasets.load(.test).fashion
            let want = try XCTUnwrap(fx.fashion[split.rawValue])
            XCTAssertEqual(ds.count, split == .train ? 60000 : 10000)
            XCTAssertEqual(ds.count, want.count)
            XCTAssertEqual(ds.labelCounts(), want.labelCounts)
            XCTAssertEqual(ds.labelCounts(), [Int](repeating: split == .train ? 6000 : 1000, count: 10))
            XCTAssertEqual(ds.images.reduce(0) { $0 + Int($1) }, want.pixelSum)
            XCTAssertEqual(ds.classNames, FashionMNIST.classNames)
            XCTAssertEqual(ds.sourceIndices, Array(0..<ds.count))
            for im in want.images {
                let img = ds.image(im.index)
                XCTAssertEqual(ds.label(im.index), im.label, "label of \(split) image \(im.index)")
                XCTAssertEqual(img.reduce(0) { $0 + Int($1) }, im.sum)
                XCTAssertEqual(checksum(img), im.checksum, "checksum of \(split) image \(im.index)")
                XCTAssertEqual(Int(img[img.startIndex + 14 * 28 + 14]), im.pixel_14_14)
            }
        }
    }

    func testAnimalMNISTFixedSplit() throws {
        let fx = try Fixture.load()
        let (_, train) = try Datasets.load(.train)
        let (_, test) = try Datasets.load(.test)
        XCTAssertEqual(fx.animal.fileLabelCounts, [Int](repeating: 1000, count: 10))
        XCTAssertEqual(train.count, 8000)
        XCTAssertEqual(test.count, 2000)
        XCTAssertEqual(train.labelCounts(), [Int](repeating: 800, count: 10))
        XCTAssertEqual(test.labelCounts(), [Int](repeating: 200, count: 10))
        XCTAssertTrue(Set(train.sourceIndices).isDisjoint(with: test.sourceIndices))
        XCTAssertEqual(Set(train.sourceIndices).union(test.sourceIndices), Set(0..<10000))
        for (ds, want) in [(train, fx.animal.train), (test, fx.animal.test)] {
            XCTAssertEqual(ds.count, want.count)
            XCTAssertEqual(ds.labelCounts(), want.labelCounts)
            XCTAssertEqual(Array(ds.sourceIndices.prefix(5)), want.firstSourceIndices)
            XCTAssertEqual(ds.sourceIndices.reduce(0, +), want.sourceIndexSum)
            XCTAssertEqual(ds.images.reduce(0) { $0 + Int($1) }, want.pixelSum)
            for im in want.images {
                XCTAssertEqual(ds.sourceIndices[im.index], im.sourceIndex)
                XCTAssertEqual(ds.label(im.index), im.label)
                XCTAssertEqual(checksum(ds.image(im.index)), im.checksum)
                XCTAssertEqual(ds.image(im.index).reduce(0) { $0 + Int($1) }, im.sum)
            }
        }
        // The split is a fixed function of the labels.
        let again = try AnimalMNIST.load(split: .test)
        XCTAssertEqual(again.sourceIndices, test.sourceIndices)
    }

    func testMissingDatasetFileGivesClearMessage() throws {
        let empty = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: empty) }
        XCTAssertThrowsError(try FashionMNIST.load(split: .train, root: empty)) { error in
            let msg = "\(error)"
            XCTAssertEqual(error as? WorldError,
                           .missingDatasetFile(dataset: "Fashion-MNIST", path: empty + "/fashion-mnist/train-images-idx3-ubyte"))
            XCTAssertTrue(msg.contains("Fashion-MNIST file not found: \(empty)/fashion-mnist/train-images-idx3-ubyte"), msg)
            XCTAssertTrue(msg.contains("scripts/fetch_datasets.sh"), msg)
            XCTAssertEqual(error.localizedDescription, msg)
        }
        XCTAssertThrowsError(try AnimalMNIST.load(split: .test, root: empty)) { error in
            XCTAssertTrue("\(error)".contains("Animal-MNIST file not found: \(empty)/animal-mnist/animal-images-idx3-ubyte"))
            XCTAssertTrue("\(error)".contains("scripts/fetch_datasets.sh"))
        }
        XCTAssertThrowsError(try SceneSampler.load(split: .test, seed: 1, root: empty)) { error in
            XCTAssertTrue("\(error)".contains("Run scripts/fetch_datasets.sh"), "\(error)")
        }
    }

    func testDataPathsResolution() {
        XCTAssertEqual(DataPaths.root(environment: ["MCE_DATA": "/d", "MCE_CACHE": "/c", "HOME": "/h"]), "/d")
        XCTAssertEqual(DataPaths.root(environment: ["MCE_CACHE": "/c", "HOME": "/h"]), "/c")
        XCTAssertEqual(DataPaths.root(environment: ["HOME": "/h"]), "/h/.cache/mce")
        XCTAssertEqual(DataPaths.fashionMNIST("/r"), "/r/fashion-mnist")
        XCTAssertEqual(AnimalMNIST.files(root: "/r").labels, "/r/animal-mnist/animal-labels-idx1-ubyte")
        XCTAssertEqual(FashionMNIST.files(split: .test, root: "/r").images, "/r/fashion-mnist/t10k-images-idx3-ubyte")
    }

    func testIDXRoundTripAndBadFiles() throws {
        let a = IDXArray(shape: [2, 3], data: [1, 2, 3, 4, 5, 255])
        XCTAssertEqual(try IDXArray.parse(a.encoded()), a)
        XCTAssertEqual([UInt8](a.encoded().prefix(12)), [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3])
        XCTAssertThrowsError(try IDXArray.parse(Data([0x1F, 0x8B, 8, 0]))) { e in
            XCTAssertTrue("\(e)".contains("gzip-compressed"), "\(e)")
        }
        XCTAssertThrowsError(try IDXArray.parse(Data([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]))) { e in
            XCTAssertTrue("\(e)".contains("not unsigned byte"), "\(e)")
        }
        var truncated = a.encoded()
        truncated.removeLast()
        XCTAssertThrowsError(try IDXArray.parse(truncated)) { e in XCTAssertTrue("\(e)".contains("needs 18 bytes"), "\(e)") }
        XCTAssertThrowsError(try IDXArray.parse(Data([1, 2, 3]))) { e in XCTAssertTrue("\(e)".contains("bad magic"), "\(e)") }
    }

    func testRNGIsSplitMix64() {
        // Reference outputs of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
        var r = WorldRNG(seed: 1234567)
        XCTAssertEqual((0..<5).map { _ in r.next() },
                       [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821])
        var a = WorldRNG(seed: 7, index: 3), b = WorldRNG(seed: 7, index: 3), c = WorldRNG(seed: 7, index: 4)
        XCTAssertEqual(a.next(), b.next())
        XCTAssertNotEqual(a.next(), c.next())
        var s = Array(0..<50)
        var rng = WorldRNG(seed: 9)
        rng.shuffle(&s)
        XCTAssertEqual(s.sorted(), Array(0..<50))
        XCTAssertNotEqual(s, Array(0..<50))
    }
}
