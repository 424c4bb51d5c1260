import Foundation
import XCTest

/// `mce generate` as a user runs it: one short sample, and the clear errors bad prompts and arguments get
/// (issue 4: an unknown word, an empty or over-long prompt; no image is written for a refused prompt).
extension CLITests {
    func testGenerateBadInput() throws {
        let out = dir.appendingPathComponent("g").path
        func fails(_ args: [String], _ message: String, exit: Int32 = 1, line: UInt = #line) throws {
            let r = try mce(["generate", "--model", baseModel, "--out", out, "--count", "1", "--steps", "2"] + args,
                            expectExit: exit, line: line)
            XCTAssertTrue(r.err.contains(message), "expected '\(message)' in: \(r.err)", line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused run wrote \(out)", line: line)
        }
        try fails(["--prompt", ""], "--prompt \"\": the prompt is empty")
        try fails(["--prompt", "a red cat", "--prompt", " \t"], "the prompt is empty")
        try fails(["--prompt", "a red ꙮ on a blue background"], "words the vocabulary does not know")
        try fails(["--prompt", Array(repeating: "a red cat", count: 100).joined(separator: " ")], "the prompt is too long")
        try fails(["--prompt", "a red cat", "--guidance", "nan"], "--guidance must be a finite number", exit: 64)
        try fails(["--prompt", "a red cat", "--count", "0"], "--count and --steps must be ≥ 1", exit: 64)
        try fails(["--prompt", "a red cat", "--model", dir.appendingPathComponent("none").path], "none")

        // An output folder that cannot be created: the path and the reason, not an NSError dump.
        let file = dir.appendingPathComponent("plain").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try mce(["generate", "--model", baseModel, "--prompt", "a red cat on a blue background", "--count", "1",
                         "--steps", "2", "--out", file + "/sub"], expectExit: 1)
        XCTAssertTrue(r.err.contains("cannot create or write '\(file)"), r.err)
        XCTAssertFalse(r.err.contains("NSCocoaErrorDomain"), r.err)

        // A good prompt writes its PNGs and the grid.
        try mce(["generate", "--model", baseModel, "--prompt", "a red cat on a blue background", "--count", "2", "--steps", "2", "--out", out])
        for name in ["000.png", "001.png", "grid.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: (out as NSString).appendingPathComponent(name)), name)
        }
    }
}
