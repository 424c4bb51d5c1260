import Foundation
import SafeTensors
import XCTest

/// Shared by the test targets. Paths of the committed golden fixtures (made by scripts/golden/generate.py with diffusers + PyTorch).
public enum Fixtures {
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    public static func golden(_ name: String) -> String { root.appendingPathComponent("golden").appendingPathComponent(name).path }

    public static func doubles(_ file: String, _ tensor: String) throws -> [Double] {
        try SafeTensorsFile(path: golden(file)).doubles(tensor)
    }
}

/// max |a − b| and max |b|, for tolerance checks relative to the output's scale.
public func maxAbsDiff<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ a: [A], _ b: [B]) -> (diff: Double, scale: Double) {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var d = 0.0, s = 0.0
    for i in 0..<a.count {
        d = max(d, abs(Double(a[i]) - Double(b[i])))
        s = max(s, abs(Double(b[i])))
    }
    return (d, s)
}

public func assertClose<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(
    _ a: [A], _ b: [B], relTol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line
) {
    guard a.count == b.count else {
        XCTFail("\(what): \(a.count) values vs \(b.count) expected", file: file, line: line)
        return
    }
    let (d, s) = maxAbsDiff(a, b)
    XCTAssertGreaterThan(s, 0, "\(what): reference is all zeros", file: file, line: line)
    XCTAssertLessThanOrEqual(d, relTol * s, "\(what): max|diff| \(d) > \(relTol) × max|ref| \(s)", file: file, line: line)
}
