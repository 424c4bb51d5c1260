import Foundation
import XCTest

@testable import SafeTensors

/// Every way a file can be broken gives a SafeTensorsError naming the file (and tensor), never a
/// crash or a silent wrong read.
final class MalformedFileTests: TempDirTestCase {
    private let f32x2 = bytesOf([Float(1), 2])

    private func assertOpenFails(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil, tensor: String? = nil, mentions: [String], line: UInt = #line) throws {
        let path = try writeRaw(header: header, data: data, declaredLength: declaredLength, to: "bad.safetensors")
        assertSTError({ _ = try SafeTensorsFile(path: path) }, fileName: "bad.safetensors", tensor: tensor, mentions: mentions, line: line)
    }

    func testMissingFile() {
        let path = tempPath("nope.safetensors")
        assertSTError({ _ = try SafeTensorsFile(path: path) }, fileName: "nope.safetensors", mentions: ["no such file"])
    }

    func testDirectoryIsNotAFile() {
        assertSTError({ _ = try SafeTensorsFile(path: self.tempDir.path) }, fileName: tempDir.lastPathComponent, mentions: ["directory"])
    }

    func testEmptyAndTooShortFiles() throws {
        let empty = try writeBytes([], to: "empty.safetensors")
        assertSTError({ _ = try SafeTensorsFile(path: empty) }, fileName: "empty.safetensors", mentions: ["empty"])
        let short = try writeBytes([1, 0, 0, 0, 0], to: "short.safetensors")
        assertSTError({ _ = try SafeTensorsFile(path: short) }, fileName: "short.safetensors", mentions: ["5 bytes", "8-byte"])
    }

    func testUnreadableFile() throws {
        guard getuid() != 0 else { throw XCTSkip("root can read any file") }
        let path = try writeRaw(header: "{}", to: "locked.safetensors")
        chmod(path, 0)
        assertSTError({ _ = try SafeTensorsFile(path: path) }, fileName: "locked.safetensors", mentions: ["cannot open"])
    }

    func testHeaderLengthPastEndOfFile() throws {
        try assertOpenFails(header: "{}", declaredLength: 1000, mentions: ["header length 1000", "past the end of the file"])
    }

    func testHeaderTooLarge() throws {
        try assertOpenFails(header: "{}", declaredLength: 100_000_001, mentions: ["100000001", "limit"])
        try assertOpenFails(header: "{}", declaredLength: .max, mentions: ["limit"])
    }

    func testTruncatedData() throws {
        var writer = SafeTensorsWriter()
        writer.add("a.weight", shape: [2], floats: [1, 2])
        writer.add("w", shape: [3, 4], doubles: Array(repeating: 1, count: 12))
        let full = try writer.serialized()
        // F64 "w" comes first (alignment order); cutting the tail truncates "a.weight".
        try writeBytes(Array(full.dropLast(3)), to: "trunc.safetensors")
        assertSTError({ _ = try SafeTensorsFile(path: self.tempPath("trunc.safetensors")) }, fileName: "trunc.safetensors", tensor: "a.weight", mentions: ["truncated"])
        // Cut inside "w" as well: the error names a tensor whose data is missing.
        try writeBytes(Array(full.dropLast(40)), to: "trunc2.safetensors")
        assertSTError({ _ = try SafeTensorsFile(path: self.tempPath("trunc2.safetensors")) }, fileName: "trunc2.safetensors", mentions: ["truncated"])
    }

    func testTruncationAtEveryLengthNeverCrashes() throws {
        var writer = SafeTensorsWriter(metadata: ["k": "v"])
        writer.add("a", shape: [3], floats: [1, 2, 3])
        writer.add("b", shape: [2], halfPrecisionFrom: [1, 2], dtype: .BF16)
        let full = try writer.serialized()
        for length in 0..<full.count {
            let path = try writeBytes(Array(full.prefix(length)), to: "cut.safetensors")
            assertSTError({ _ = try SafeTensorsFile(path: path) }, fileName: "cut.safetensors")
        }
        let path = try writeBytes(full, to: "cut.safetensors")
        XCTAssertEqual(try SafeTensorsFile(path: path).floats("a"), [1, 2, 3])
    }

    func testTrailingBytesNotCoveredByTensors() throws {
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: f32x2 + [0, 0, 0, 0], mentions: ["12 bytes", "cover only 8", "4 trailing"])
    }

    func testOverlappingOffsets() throws {
        try assertOpenFails(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            data: f32x2 + f32x2.prefix(4), tensor: "b", mentions: ["overlap", "'a'"])
    }

    func testIdenticalOffsets() throws {
        try assertOpenFails(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            data: f32x2, tensor: "b", mentions: ["overlap"])
    }

    func testHoleBetweenTensors() throws {
        try assertOpenFails(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#,
            data: f32x2 + [0, 0, 0, 0] + f32x2, tensor: "b", mentions: ["hole of 4 bytes", "'a'"])
        try assertOpenFails(
            header: #"{"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            data: [0, 0, 0, 0] + f32x2, tensor: "b", mentions: ["hole", "start"])
    }

    func testOutOfRangeOffsets() throws {
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[1000,1008]}}"#, data: f32x2, tensor: "a", mentions: ["past the end of the data buffer"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551616]}}"#, data: f32x2, tensor: "a", mentions: ["data_offsets"])
    }

    func testBadOffsetsShape() throws {
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: f32x2, tensor: "a", mentions: ["begin > end"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#, data: f32x2, tensor: "a", mentions: ["[begin, end]"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}}"#, data: f32x2, tensor: "a", mentions: ["data_offsets"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":"0,8"}}"#, data: f32x2, tensor: "a", mentions: ["data_offsets"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2]}}"#, data: f32x2, tensor: "a", mentions: ["missing field 'data_offsets'"])
    }

    func testBadJSON() throws {
        try assertOpenFails(header: #"{"a":{"dtype":"F32",}}"#, mentions: ["not valid JSON"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, data: f32x2, mentions: ["not valid JSON", "end of input"])
        try assertOpenFails(header: #"{"a":1}xyz"#, mentions: ["not valid JSON", "after the end"])
    }

    func testHeaderMustBeAnObject() throws {
        try assertOpenFails(header: "[1, 2]", mentions: ["starting with '{'"])
        try assertOpenFails(header: " {}", mentions: ["starting with '{'"])
        try assertOpenFails(header: "", mentions: ["empty header"])
        try assertOpenFails(header: #"{"a":[1,2]}"#, tensor: "a", mentions: ["must be an object"])
        try assertOpenFails(header: #"{"a":"F32"}"#, tensor: "a", mentions: ["must be an object"])
    }

    func testInvalidUTF8InHeader() throws {
        var bytes = [UInt8]()
        let header: [UInt8] = Array(#"{"a"#.utf8) + [0xFF] + Array(#"":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#.utf8)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes += $0 }
        bytes += header
        let path = try writeBytes(bytes, to: "utf8.safetensors")
        assertSTError({ _ = try SafeTensorsFile(path: path) }, fileName: "utf8.safetensors", mentions: ["UTF-8"])
    }

    func testUnknownDType() throws {
        try assertOpenFails(header: #"{"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["unknown dtype 'F7'", "BF16"])
        try assertOpenFails(header: #"{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#, data: [0], tensor: "a", mentions: ["sub-byte"])
        try assertOpenFails(header: #"{"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["dtype must be a string"])
        try assertOpenFails(header: #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["missing field 'dtype'"])
    }

    func testShapeByteSizeMismatch() throws {
        let path = try writeRaw(header: #"{"x.weight":{"dtype":"F32","shape":[3,4],"data_offsets":[0,40]}}"#, data: Array(repeating: 0, count: 40), to: "model.safetensors")
        do {
            _ = try SafeTensorsFile(path: path)
            XCTFail("opened")
        } catch let error as SafeTensorsError {
            XCTAssertEqual(error.tensor, "x.weight")
            XCTAssertEqual(error.message, "declared shape [3, 4] (F32) needs 48 bytes but data_offsets [0, 40] span 40")
            XCTAssertEqual(error.description, "\(path): tensor 'x.weight': declared shape [3, 4] (F32) needs 48 bytes but data_offsets [0, 40] span 40")
        }
    }

    func testBadShapes() throws {
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["non-negative", "[-1,4]"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["non-negative integers"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["shape must be an array"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["too large"])
        try assertOpenFails(header: #"{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["too large"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["missing field 'shape'"])
    }

    func testMetadataMustBeStrings() throws {
        try assertOpenFails(header: #"{"__metadata__":{"format":"pt","steps":4}}"#, mentions: ["'steps'", "must be strings", "a number"])
        try assertOpenFails(header: #"{"__metadata__":["pt"]}"#, mentions: ["__metadata__ must be an object"])
        try assertOpenFails(header: #"{"__metadata__":{"a":"1","a":"2"}}"#, mentions: ["'a' appears more than once"])
        try assertOpenFails(header: #"{"__metadata__":{},"__metadata__":{}}"#, mentions: ["more than once"])
    }

    func testDuplicateTensorName() throws {
        try assertOpenFails(
            header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            data: f32x2, tensor: "a", mentions: ["duplicate tensor name"])
        try assertOpenFails(header: #"{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: f32x2, tensor: "a", mentions: ["'dtype' appears more than once"])
    }

    func testAcceptedVariations() throws {
        // Space padding (the reference writer pads to 8), null metadata, unknown fields, any key order.
        let header = #"{"b":{"data_offsets":[8,12],"shape":[1],"dtype":"F32","extra":{"x":[1]}},"__metadata__":null,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"# + "     "
        let path = try writeRaw(header: header, data: f32x2 + bytesOf([Float(3)]), to: "ok.safetensors")
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.names, ["a", "b"])
        XCTAssertEqual(file.metadata, [:])
        XCTAssertEqual(try file.floats("b"), [3])
        XCTAssertEqual(file.headerLength, header.utf8.count)
        XCTAssertEqual(file.fileSize, 8 + header.utf8.count + 12)
        // Other padding is not JSON whitespace.
        try assertOpenFails(header: "{}\0\0\0\0\0\0", mentions: ["not valid JSON"])
    }

    func testRandomCorruptionNeverCrashes() throws {
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        writer.add("a", shape: [2, 2], floats: [1, 2, 3, 4])
        writer.add("b", shape: [3], halfPrecisionFrom: [1, 2, 3], dtype: .F16)
        writer.add("c", shape: [], int64s: [9])
        let good = try writer.serialized()
        var rng = SplitMix64(seed: 42)
        var opened = 0
        for _ in 0..<1500 {
            var bytes = good
            for _ in 0..<Int(rng.next() % 3 + 1) {
                let i = Int(rng.next() % UInt64(bytes.count))
                bytes[i] = UInt8(truncatingIfNeeded: rng.next())
            }
            let path = try writeBytes(bytes, to: "fuzz.safetensors")
            do {
                let file = try SafeTensorsFile(path: path)
                opened += 1
                for name in file.names where (try file.info(name)).dtype.isDecodableToReal {
                    _ = try file.doubles(name)
                }
            } catch let error as SafeTensorsError {
                XCTAssertTrue(error.description.contains("fuzz.safetensors"))
            }
        }
        XCTAssertGreaterThan(opened, 0)  // data-only corruptions still open
    }
}

/// Small deterministic generator for the fuzz test.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
