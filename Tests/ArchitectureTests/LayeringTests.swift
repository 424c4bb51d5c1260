import Foundation
import XCTest

/// The layering rule as the sources state it: Product code (erasure, evaluation, attacks) never imports a
/// Testbed module (the world, its detector and base model), and the Engine imports neither. The build enforces
/// the same through Package.swift's dependencies and SwiftPM's explicit import check; this test names the file.
final class LayeringTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func imports(under folder: String) throws -> [(file: String, module: String)] {
        let base = Self.root.appendingPathComponent(folder)
        let files = try XCTUnwrap(FileManager.default.enumerator(atPath: base.path)).compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        XCTAssertFalse(files.isEmpty, "no Swift files under \(folder)")
        var out: [(String, String)] = []
        for f in files {
            let text = try String(contentsOf: base.appendingPathComponent(f), encoding: .utf8)
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ").map(String.init)
                if let i = words.firstIndex(of: "import"), i + 1 < words.count, words[..<i].allSatisfy({ $0.hasPrefix("@") }) {
                    out.append((folder + "/" + f, words[i + 1]))
                }
            }
        }
        return out
    }

    func testProductDoesNotImportTheTestbed() throws {
        let testbed: Set<String> = ["World", "Detector", "BaseModel"]
        let found = try imports(under: "Sources/Product")
        XCTAssertTrue(found.contains { $0.module == "Flux" }, "the scan finds the Product's imports")
        for (file, module) in found where testbed.contains(module) { XCTFail("\(file) imports the testbed module \(module)") }
    }

    func testEngineImportsNeitherProductNorTestbed() throws {
        let above: Set<String> = ["World", "Detector", "BaseModel", "Erasure", "Evaluation", "Attacks", "ArgumentParser"]
        for (file, module) in try imports(under: "Sources/Engine") where above.contains(module) {
            XCTFail("\(file) imports \(module), which sits above the engine")
        }
    }
}
