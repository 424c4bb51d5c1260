import Foundation
import XCTest

@testable import SafeTensors

/// A fresh temporary folder per test, removed afterwards.
class TempDirTestCase: XCTestCase {
    var tempDir: URL!

    override func setUpWithError() throws {
        tempDir = FileManager.default.temporaryDirectory
            .appendingPathComponent("SafeTensorsTests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: tempDir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let tempDir { try? FileManager.default.removeItem(at: tempDir) }
    }

    func tempPath(_ name: String) -> String { tempDir.appendingPathComponent(name).path }

    /// Writes raw bytes to a temp file and returns its path.
    @discardableResult
    func writeBytes(_ bytes: [UInt8], to name: String) throws -> String {
        let path = tempPath(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Builds a file by hand: 8-byte length (or `declaredLength`), the header text, then `data`.
    /// For constructing malformed files the writer would refuse to produce.
    @discardableResult
    func writeRaw(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil, to name: String = "bad.safetensors") throws -> String {
        let h = Array(header.utf8)
        var bytes = [UInt8]()
        withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { bytes += $0 }
        bytes += h
        bytes += data
        return try writeBytes(bytes, to: name)
    }

    /// Asserts that `body` throws a SafeTensorsError whose description names `fileName` (the last
    /// path component), the `tensor` (when given) and contains every string in `mentions`.
    func assertSTError(
        _ body: () throws -> Void, fileName: String, tensor: String? = nil, mentions: [String] = [],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            try body()
            XCTFail("expected a SafeTensorsError, nothing was thrown", file: file, line: line)
        } catch let error as SafeTensorsError {
            let text = error.description
            XCTAssertTrue(text.contains(fileName), "error does not name the file '\(fileName)': \(text)", file: file, line: line)
            if let tensor {
                XCTAssertEqual(error.tensor, tensor, "wrong tensor in: \(text)", file: file, line: line)
                XCTAssertTrue(text.contains("'\(tensor)'"), "error does not name tensor '\(tensor)': \(text)", file: file, line: line)
            }
            for m in mentions {
                XCTAssertTrue(text.contains(m), "error does not mention '\(m)': \(text)", file: file, line: line)
            }
        } catch {
            XCTFail("expected a SafeTensorsError, got \(type(of: error)): \(error)", file: file, line: line)
        }
    }
}

/// Bytes of a value array in memory (little-endian host).
func bytesOf<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { [UInt8]($0) } }

/// Bitwise equality that treats all NaNs alike (for float comparisons that must be exact).
func sameFloat(_ a: Float, _ b: Float) -> Bool { (a.isNaN && b.isNaN) || a.bitPattern == b.bitPattern }
func sameDouble(_ a: Double, _ b: Double) -> Bool { (a.isNaN && b.isNaN) || a.bitPattern == b.bitPattern }

/// The repository's Tests/ folder, found from this source file's path.
var testsDirectory: URL {
    var url = URL(fileURLWithPath: #filePath)
    while url.lastPathComponent != "Tests" && url.path != "/" { url.deleteLastPathComponent() }
    return url
}
