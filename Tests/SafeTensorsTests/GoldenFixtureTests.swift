import Foundation
import XCTest

@testable import SafeTensors

/// Reads files written by Python (scripts/golden/generate.py) from Tests/Fixtures/golden.
final class GoldenFixtureTests: XCTestCase {
    private var golden: URL { testsDirectory.appendingPathComponent("Fixtures/golden") }

    private func requireFixture(_ relativePath: String) throws -> String {
        let path = golden.appendingPathComponent(relativePath).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw FixtureError(message: "missing fixture \(path); regenerate with scripts/golden/generate.py")
        }
        return path
    }

    /// `dtypes.safetensors` is written by the `safetensors` library; `dtypes_unaligned` by hand
    /// with tensors at odd offsets. Each comes with {name: {dtype, shape, values: [float64]}}.
    func testPythonWrittenDTypesFixture() throws {
        let file = try checkAgainstExpected("dtypes", metadata: ["format": "pt", "note": "dtype fixture"])
        for name in ["t_f32", "t_f64", "t_f16", "t_bf16", "t_i64", "t_i32", "t_u8", "t_bool", "scalar_f32", "empty_f32"] {
            XCTAssertTrue(file.contains(name), "fixture lacks \(name)")
        }
        XCTAssertEqual(try file.info("scalar_f32").shape, [])
        XCTAssertEqual(try file.info("scalar_f32").count, 1)
        XCTAssertEqual(try file.info("empty_f32").count, 0)
    }

    func testPythonWrittenUnalignedFixture() throws {
        let file = try checkAgainstExpected("dtypes_unaligned", metadata: ["format": "pt", "note": "unaligned fixture"])
        XCTAssertEqual(try file.info("t_f32_odd").dataOffset % 2, 1, "the fixture really is unaligned")
    }

    @discardableResult
    private func checkAgainstExpected(_ stem: String, metadata: [String: String], line: UInt = #line) throws -> SafeTensorsFile {
        let path = try requireFixture("\(stem).safetensors")
        let expectedPath = try requireFixture("\(stem).expected.json")
        // Parsed with our own JSON parser: Foundation's JSONSerialization on Linux does not round
        // decimal numbers correctly (0.10000000149011612 came back one ulp off).
        let text = try Array(Data(contentsOf: URL(fileURLWithPath: expectedPath)))
        guard case .object(let entries) = try text.withUnsafeBytes({ try JSONParser.parse($0) }) else {
            throw FixtureError(message: "\(expectedPath) is not a JSON object")
        }

        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.metadata, metadata, line: line)
        XCTAssertEqual(Set(file.names), Set(entries.map(\.key).filter { $0 != "__metadata__" }), line: line)

        for (name, spec) in entries where name != "__metadata__" {
            guard case .object(let fields) = spec,
                  case .string(let dtypeName)? = fields.first(where: { $0.key == "dtype" })?.value,
                  case .array(let shapeValues)? = fields.first(where: { $0.key == "shape" })?.value,
                  case .array(let valueList)? = fields.first(where: { $0.key == "values" })?.value
            else { XCTFail("bad expected entry \(name)", line: line); continue }
            let shape = shapeValues.compactMap(\.nonNegativeInt)
            let values = valueList.map { value -> Double in
                switch value {
                case .number(let literal): return Double(literal) ?? .nan
                case .string(let s): return Double(s) ?? .nan  // "nan"/"inf" if ever spelled out
                default: return .nan
                }
            }

            let info = try file.info(name)
            XCTAssertEqual(info.dtype.rawValue, dtypeName, name, line: line)
            XCTAssertEqual(info.shape, shape, name, line: line)
            XCTAssertEqual(info.count, values.count, name, line: line)

            // Every fixture dtype converts to Double exactly (I64 values are below 2^53).
            let got = try file.doubles(name)
            XCTAssertEqual(got.count, values.count, name, line: line)
            for (i, (g, e)) in zip(got, values).enumerated() {
                XCTAssertTrue(sameDouble(g, e), "\(stem) \(name)[\(i)]: \(g) != \(e)", line: line)
            }
            let floats = try file.floats(name)
            for (i, (g, e)) in zip(floats, values).enumerated() {
                XCTAssertTrue(sameFloat(g, Float(e)), "\(stem) \(name)[\(i)] as Float: \(g) != \(Float(e))", line: line)
            }
            if info.dtype.isInteger {
                XCTAssertEqual(try file.int64s(name).map { Double($0) }, values, name, line: line)
            }
        }
        return file
    }

    /// The same diffusers model saved as one F32 file, as shards with an index, and as BF16
    /// (weights are bf16-representable, so all three hold identical values).
    func testDiffusersFoldersAgree() throws {
        for model in ["tiny", "dev"] {
            let single = try TensorStore(path: try requireFixture(model))
            let sharded = try TensorStore(path: try requireFixture("\(model)_sharded"))
            XCTAssertNil(single.indexPath)
            XCTAssertNotNil(sharded.indexPath)
            XCTAssertGreaterThanOrEqual(sharded.files.count, 3)
            XCTAssertEqual(single.names, sharded.names)
            XCTAssertNotNil(sharded.metadata["total_size"])
            let totalBytes = try sharded.names.reduce(0) { $0 + (try sharded.info($1).byteCount) }
            XCTAssertEqual(sharded.metadata["total_size"], String(totalBytes), "index total_size is the sum of tensor bytes")
            let bf16Folder = golden.appendingPathComponent("\(model)_bf16").path
            let bf16 = FileManager.default.fileExists(atPath: bf16Folder) ? try TensorStore(path: bf16Folder) : nil
            for name in single.names {
                let reference = try single.floats(name)
                XCTAssertEqual(try sharded.floats(name), reference, "\(model) \(name)")
                if let bf16 {
                    XCTAssertEqual(try bf16.info(name).dtype, .BF16)
                    XCTAssertEqual(try bf16.floats(name), reference, "\(model)_bf16 \(name)")
                }
            }
        }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
