import Foundation
import XCTest
@testable import World

/// Tests/ (this file is Tests/WorldTests/Support.swift).
let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

/// Values computed independently in Python by scripts/world/make_fixture.py.
struct Fixture: Decodable {
    struct ImageInfo: Decodable {
        let index: Int, label: Int, sum: Int, checksum: UInt32, pixel_14_14: Int
        let sourceIndex: Int?
    }
    struct FashionSplit: Decodable { let count: Int, labelCounts: [Int], pixelSum: Int, images: [ImageInfo] }
    struct AnimalSplit: Decodable {
        let count: Int, labelCounts: [Int], firstSourceIndices: [Int], sourceIndexSum: Int, pixelSum: Int, images: [ImageInfo]
    }
    struct Animal: Decodable { let fileLabelCounts: [Int], train: AnimalSplit, test: AnimalSplit }
    struct Render: Decodable { let image: String, index: Int, scale: Float, dx: Float, dy: Float, alphaSum: Double, probes: [[Double]] }
    let fashion: [String: FashionSplit]
    let animal: Animal
    let render: [Render]

    static func load() throws -> Fixture {
        let url = testsDirectory.appendingPathComponent("Fixtures/world/datasets.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }
}

/// sum((k + 1) · p_k) mod 2^32, as in make_fixture.py.
func checksum<C: Collection>(_ img: C) -> UInt32 where C.Element == UInt8 {
    var s: UInt64 = 0
    for (k, p) in img.enumerated() { s = (s + UInt64(k + 1) * UInt64(p)) & 0xFFFF_FFFF }
    return UInt32(s)
}

/// The real datasets, loaded once. A missing dataset fails the test (it is not skipped).
enum Datasets {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [Split: (Dataset, Dataset)] = [:]

    static func load(_ split: Split, file: StaticString = #filePath, line: UInt = #line) throws -> (fashion: Dataset, animal: Dataset) {
        lock.lock()
        defer { lock.unlock() }
        if let c = cache[split] { return c }
        do {
            let c = (try FashionMNIST.load(split: split), try AnimalMNIST.load(split: split))
            cache[split] = c
            return c
        } catch {
            XCTFail("The World tests need the real datasets (data directory \(DataPaths.root())): \(error)", file: file, line: line)
            throw error
        }
    }
}

func tempDirectory() throws -> String {
    let d = (NSTemporaryDirectory() as NSString).appendingPathComponent("world-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}
