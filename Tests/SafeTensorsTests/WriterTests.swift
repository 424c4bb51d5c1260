import Foundation
import XCTest

@testable import SafeTensors

final class WriterTests: TempDirTestCase {
    /// Bytes produced by Python `safetensors.numpy.save` (0.8.0) for
    /// {"b": f32 [1.5, -2], "a": i64 [7], "c": u8 [1, 2, 3], "d": f16 scalar 0.5, "e": f32 zeros (0, 3)}
    /// with metadata {"format": "pt"}.
    private let pythonBytes: [UInt8] = {
        let hex = "30010000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a227074227d2c2261223a7b226474797065223a22493634222c227368617065223a5b315d2c22646174615f6f666673657473223a5b302c385d7d2c2262223a7b226474797065223a22463332222c227368617065223a5b325d2c22646174615f6f666673657473223a5b382c31365d7d2c2265223a7b226474797065223a22463332222c227368617065223a5b302c335d2c22646174615f6f666673657473223a5b31362c31365d7d2c2264223a7b226474797065223a22463136222c227368617065223a5b5d2c22646174615f6f666673657473223a5b31362c31385d7d2c2263223a7b226474797065223a225538222c227368617065223a5b335d2c22646174615f6f666673657473223a5b31382c32315d7d7d07000000000000000000c03f000000c00038010203"
        var bytes = [UInt8]()
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }()

    func testOutputIsByteIdenticalToTheReferenceWriter() throws {
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        writer.add("c", shape: [3], dtype: .U8, bytes: [1, 2, 3])
        writer.add("b", shape: [2], floats: [1.5, -2])
        writer.add("e", shape: [0, 3], floats: [])
        writer.add("d", shape: [], halfPrecisionFrom: [0.5], dtype: .F16)
        writer.add("a", shape: [1], int64s: [7])
        XCTAssertEqual(try writer.serialized(), pythonBytes)
    }

    func testLayout() throws {
        var writer = SafeTensorsWriter(metadata: ["z": "1", "a": "2"])
        writer.add("small", shape: [1], dtype: .BOOL, bytes: [1])
        writer.add("big", shape: [1], doubles: [1])
        writer.add("mid", shape: [3], halfPrecisionFrom: [1, 2, 3], dtype: .BF16)
        writer.add("alsoBig", shape: [1], doubles: [2])
        let bytes = try writer.serialized()
        let n = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        XCTAssertEqual((8 + n) % 8, 0, "data starts 8-aligned")
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix(#"{"__metadata__":{"a":"2","z":"1"},"alsoBig":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"big":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},"mid":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},"small":{"dtype":"BOOL","shape":[1],"data_offsets":[22,23]}}"#), header)
        XCTAssertEqual(bytes.count, 8 + n + 23)
    }

    func testWriteReplacesAtomicallyAndLeavesNoTemporaries() throws {
        let path = tempPath("out.safetensors")
        var first = SafeTensorsWriter()
        first.add("x", shape: [1], floats: [1])
        try first.write(to: path)
        var second = SafeTensorsWriter()
        second.add("x", shape: [2], floats: [2, 3])
        try second.write(to: path)
        XCTAssertEqual(try SafeTensorsFile(path: path).floats("x"), [2, 3])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tempDir.path), ["out.safetensors"])
    }

    func testDeferredTensorsAreFilledAtWriteTime() throws {
        struct Boom: Error {}
        var eager = SafeTensorsWriter(metadata: ["format": "pt"])
        var deferred = SafeTensorsWriter(metadata: ["format": "pt"])
        eager.add("c", shape: [3], dtype: .U8, bytes: [1, 2, 3])
        deferred.add("c", shape: [3], dtype: .U8) { $0.copyBytes(from: [1, 2, 3]) }
        eager.add("w", shape: [2, 2], floats: [1, -2, 3.5, 0])
        deferred.add("w", shape: [2, 2], dtype: .F32) { $0.copyBytes(from: bytesOf([Float(1), -2, 3.5, 0])) }
        eager.add("e", shape: [0], floats: [])
        deferred.add("e", shape: [0], dtype: .F32) { XCTAssertEqual($0.count, 0) }
        XCTAssertEqual(try deferred.serialized(), try eager.serialized())
        let path = tempPath("deferred.safetensors")
        try deferred.write(to: path)
        XCTAssertEqual(try FileManager.default.contents(atPath: path).map { [UInt8]($0) }, try eager.serialized())
        // A failing producer aborts the write: the old file stays, no temporary is left.
        var failing = SafeTensorsWriter()
        failing.add("x", shape: [1], dtype: .F32) { _ in throw Boom() }
        XCTAssertThrowsError(try failing.write(to: path)) { XCTAssertTrue($0 is Boom) }
        XCTAssertEqual(try SafeTensorsFile(path: path).floats("w"), [1, -2, 3.5, 0])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tempDir.path), ["deferred.safetensors"])
    }

    func testUnwritablePathsThrowAndLeaveNothing() throws {
        var writer = SafeTensorsWriter()
        writer.add("x", shape: [1], floats: [1])

        // Folder does not exist.
        let missing = tempPath("no/such/folder/out.safetensors")
        assertSTError({ try writer.write(to: missing) }, fileName: "out.safetensors", mentions: ["cannot create a temporary file", "No such file"])

        // Parent is a regular file (fails even for root).
        try writeBytes([1], to: "plain")
        assertSTError({ try writer.write(to: self.tempPath("plain/out.safetensors")) }, fileName: "out.safetensors", mentions: ["Not a directory"])

        // The temporary file is created, but the final rename fails (target is a folder):
        // the temporary must be removed.
        let folderTarget = tempPath("target.safetensors")
        try FileManager.default.createDirectory(atPath: folderTarget, withIntermediateDirectories: false)
        try writeBytes([0], to: "target.safetensors/keep")
        assertSTError({ try writer.write(to: folderTarget) }, fileName: "target.safetensors", mentions: ["cannot move the temporary file into place"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tempDir.path).sorted(), ["plain", "target.safetensors"])

        if getuid() != 0 {
            let readOnly = tempPath("ro")
            try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: false)
            chmod(readOnly, 0o555)
            defer { chmod(readOnly, 0o755) }
            assertSTError({ try writer.write(to: readOnly + "/out.safetensors") }, fileName: "out.safetensors", mentions: ["Permission denied"])
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: readOnly), [])
        }
    }

    func testInvalidAddsAreReportedByWrite() throws {
        func expectFailure(_ mentions: [String], tensor: String, _ build: (inout SafeTensorsWriter) -> Void) {
            var writer = SafeTensorsWriter()
            writer.add("fine", shape: [1], floats: [1])
            build(&writer)
            let path = tempPath("rejected.safetensors")
            assertSTError({ try writer.write(to: path) }, fileName: "rejected.safetensors", tensor: tensor, mentions: mentions)
            XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        }
        expectFailure(["3 elements", "2 values"], tensor: "x") { $0.add("x", shape: [3], floats: [1, 2]) }
        expectFailure(["added twice"], tensor: "fine") { $0.add("fine", shape: [1], floats: [2]) }
        expectFailure(["negative"], tensor: "x") { $0.add("x", shape: [-1], floats: []) }
        expectFailure(["reserved"], tensor: "__metadata__") { $0.add("__metadata__", shape: [1], floats: [1]) }
        expectFailure(["needs 2 × 2 bytes", "3 were given"], tensor: "x") { $0.add("x", shape: [2], dtype: .BF16, bytes: [1, 2, 3]) }
        expectFailure(["BF16 or F16"], tensor: "x") { $0.add("x", shape: [1], halfPrecisionFrom: [1], dtype: .F32) }
        expectFailure(["too large"], tensor: "x") { $0.add("x", shape: [Int.max, 2], floats: []) }
    }

    /// Metadata JSON is the same bytes every run: Foundation's encoder alone orders keys differently per process.
    func testMetadataJSONSortsKeys() throws {
        struct Options: Encodable { let zeta = 1.1, beta = 1, method = "mask", alpha = [3, 1], nested = ["b": 2, "a": 1] }
        XCTAssertEqual(try metadataJSON(Options()),
                       #"{"alpha":[3,1],"beta":1,"method":"mask","nested":{"a":1,"b":2},"zeta":1.1}"#)
    }
}
