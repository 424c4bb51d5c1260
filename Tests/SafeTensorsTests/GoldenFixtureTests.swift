import Foundation
import XCTest

@testable import SafeTensors

/// Reads a file written by Python's `safetensors` (Tests/Fixtures/golden/dtypes.safetensors) and
/// checks every tensor against dtypes.expected.json: {name: {dtype, shape, values: [float64]}}.
final class GoldenFixtureTests: XCTestCase {
    private var golden: URL { testsDirectory.appendingPathComponent("Fixtures/golden") }

    func testPythonWrittenDTypesFixture() throws {
        let fixture = golden.appendingPathComponent("dtypes.safetensors").path
        let expectedURL = golden.appendingPathComponent("dtypes.expected.json")
        guard FileManager.default.fileExists(atPath: fixture), FileManager.default.fileExists(atPath: expectedURL.path) else {
            throw XCTSkip("fixture not generated yet: \(fixture) (see scripts/golden)")
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: expectedURL))
        let expected = try XCTUnwrap(json as? [String: Any])

        let file = try SafeTensorsFile(path: fixture)
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "dtype fixture"])
        let required = ["t_f32", "t_f64", "t_f16", "t_bf16", "t_i64", "t_i32", "t_u8", "t_bool", "scalar_f32", "empty_f32"]
        for name in required { XCTAssertTrue(file.contains(name), "fixture lacks \(name)") }
        XCTAssertEqual(Set(file.names), Set(expected.keys.filter { $0 != "__metadata__" }))

        for (name, spec) in expected where name != "__metadata__" {
            let entry = try XCTUnwrap(spec as? [String: Any], name)
            let dtypeName = try XCTUnwrap(entry["dtype"] as? String, name)
            let shape = try XCTUnwrap(entry["shape"] as? [Int], name)
            let values = try XCTUnwrap(entry["values"] as? [Any], name).map { value -> Double in
                if let number = value as? NSNumber { return number.doubleValue }
                switch value as? String {  // non-finite values, if the generator spells them out
                case "nan", "NaN": return .nan
                case "inf", "Infinity": return .infinity
                case "-inf", "-Infinity": return -.infinity
                default: return .nan
                }
            }
            let info = try file.info(name)
            XCTAssertEqual(info.dtype.rawValue, dtypeName, name)
            XCTAssertEqual(info.shape, shape, name)
            XCTAssertEqual(info.count, values.count, name)

            // Every listed dtype converts to Double exactly.
            let got = try file.doubles(name)
            XCTAssertEqual(got.count, values.count, name)
            for (i, (g, e)) in zip(got, values).enumerated() {
                XCTAssertTrue(sameDouble(g, e) || (g == 0 && e == 0 && g.sign == e.sign), "\(name)[\(i)]: \(g) != \(e)")
            }
            let floats = try file.floats(name)
            for (i, (g, e)) in zip(floats, values).enumerated() where info.dtype != .F64 && info.dtype != .I64 {
                XCTAssertTrue(sameFloat(g, Float(e)), "\(name)[\(i)] as Float: \(g) != \(Float(e))")
            }
            if info.dtype.isInteger {
                XCTAssertEqual(try file.int64s(name).map(Double.init), values, name)
            }
        }
        XCTAssertEqual(try file.info("scalar_f32").shape, [])
        XCTAssertEqual(try file.info("empty_f32").count, 0)
    }
}
