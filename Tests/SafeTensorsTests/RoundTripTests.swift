import Foundation
import XCTest

@testable import SafeTensors

/// Writer -> reader round trips for every dtype, plus the decoding API on good files.
final class RoundTripTests: TempDirTestCase {
    /// For each dtype: little-endian bytes of 6 elements and the values they mean (as Double).
    private func sample(_ dtype: DType) -> (bytes: [UInt8], values: [Double]) {
        switch dtype {
        case .BOOL: return ([0, 1, 1, 0, 1, 0], [0, 1, 1, 0, 1, 0])
        case .U8: let v: [UInt8] = [0, 1, 127, 128, 254, 255]; return (v, v.map { Double($0) })
        case .I8: let v: [Int8] = [-128, -1, 0, 1, 127, 5]; return (bytesOf(v), v.map { Double($0) })
        case .U16: let v: [UInt16] = [0, 1, 65535, 256, 32768, 7]; return (bytesOf(v), v.map { Double($0) })
        case .I16: let v: [Int16] = [-32768, -1, 0, 1, 32767, 300]; return (bytesOf(v), v.map { Double($0) })
        case .U32: let v: [UInt32] = [0, .max, 1, 1 << 31, 16_777_217, 9]; return (bytesOf(v), v.map { Double($0) })
        case .I32: let v: [Int32] = [.min, -1, 0, 1, .max, 16_777_217]; return (bytesOf(v), v.map { Double($0) })
        case .U64: let v: [UInt64] = [0, 1, 1 << 53, UInt64(Int64.max), 42, 7]; return (bytesOf(v), v.map { Double($0) })
        case .I64: let v: [Int64] = [.min, -1, 0, 1, .max, (1 << 53) + 1]; return (bytesOf(v), v.map { Double($0) })
        case .F16:
            let v: [Float16] = [0, -0.0, 1.5, 65504, -.infinity, .leastNonzeroMagnitude]
            return (bytesOf(v), v.map { Double($0) })
        case .BF16:
            let bits: [UInt16] = [0x0000, 0x8000, 0x3FC0, 0x7F7F, 0xFF80, 0x0001]
            return (bytesOf(bits), bits.map { Double(Float(bitPattern: UInt32($0) << 16)) })
        case .F32:
            let v: [Float] = [0, -0.0, 1.5, .greatestFiniteMagnitude, -.infinity, .leastNonzeroMagnitude]
            return (bytesOf(v), v.map { Double($0) })
        case .F64:
            let v: [Double] = [0, -0.0, 0.1, .greatestFiniteMagnitude, -.infinity, .leastNonzeroMagnitude]
            return (bytesOf(v), v)
        case .F8_E4M3: return ([0x00, 0x80, 0x38, 0x7E, 0xFE, 0x01], [0, -0.0, 1, 448, -448, 0.001953125])
        case .F8_E5M2: return ([0x00, 0x80, 0x3C, 0x7B, 0xFC, 0x01], [0, -0.0, 1, 57344, -.infinity, 1.52587890625e-05])
        case .F8_E8M0: return ([0x7F, 0x80, 0x7E, 0x00, 0xFE, 0x82], [1, 2, 0.5, 0x1p-127, 0x1p127, 8])
        case .F8_E4M3FNUZ: return ([0x00, 0x40, 0x7F, 0xFF, 0xC0, 0x01], [0, 1, 240, -240, -1, 0.0009765625])
        case .F8_E5M2FNUZ: return ([0x00, 0x40, 0x7F, 0xFF, 0xC0, 0x01], [0, 1, 57344, -57344, -1, 7.62939453125e-06])
        case .C64:
            let v: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
            return (bytesOf(v), [])
        }
    }

    func testEveryDTypeRoundTripsThroughWriterAndReader() throws {
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        for dtype in DType.allCases {
            writer.add("t_\(dtype.rawValue)", shape: [2, 3], dtype: dtype, bytes: sample(dtype).bytes)
        }
        let path = tempPath("all.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)

        XCTAssertEqual(file.names, DType.allCases.map { "t_\($0.rawValue)" }.sorted())
        XCTAssertEqual(file.metadata, ["format": "pt"])
        for dtype in DType.allCases {
            let name = "t_\(dtype.rawValue)"
            let (bytes, values) = sample(dtype)
            let info = try file.info(name)
            XCTAssertEqual(info.dtype, dtype)
            XCTAssertEqual(info.shape, [2, 3])
            XCTAssertEqual(info.count, 6)
            XCTAssertEqual(info.byteCount, 6 * dtype.byteSize)
            XCTAssertEqual(Array(try file.rawBytes(name)), bytes, "\(dtype) raw bytes")
            if dtype == .C64 {
                assertSTError({ _ = try file.floats(name) }, fileName: "all.safetensors", tensor: name, mentions: ["C64", "unsupported"])
                continue
            }
            let doubles = try file.doubles(name)
            let floats = try file.floats(name)
            for i in 0..<6 {
                XCTAssertTrue(sameDouble(doubles[i], values[i]), "\(dtype)[\(i)]: \(doubles[i]) != \(values[i])")
                XCTAssertTrue(sameFloat(floats[i], Float(values[i])), "\(dtype)[\(i)]: \(floats[i]) != \(Float(values[i]))")
            }
            if dtype.isInteger {
                XCTAssertEqual(try file.int64s(name).map { Double($0) }, values, "\(dtype)")
            } else {
                assertSTError({ _ = try file.int64s(name) }, fileName: "all.safetensors", tensor: name, mentions: [dtype.rawValue])
            }
        }
    }

    func testIntegersAreExactThroughInt64s() throws {
        var writer = SafeTensorsWriter()
        let i64: [Int64] = [.min, -1, 0, 1, .max, (1 << 53) + 1]
        writer.add("i64", shape: [6], int64s: i64)
        writer.add("u64", shape: [3], dtype: .U64, bytes: bytesOf([UInt64(Int64.max), 0, UInt64.max]))
        writer.add("u32", shape: [2], dtype: .U32, bytes: bytesOf([UInt32.max, 0]))
        let path = tempPath("ints.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(try file.int64s("i64"), i64)
        XCTAssertEqual(try file.int64s("u32"), [Int64(UInt32.max), 0])
        // U64 above Int64.max cannot be represented: a clear error, not a wrapped value.
        assertSTError({ _ = try file.int64s("u64") }, fileName: "ints.safetensors", tensor: "u64", mentions: ["element 2", "18446744073709551615"])
        var two = [Int64](repeating: 0, count: 2)
        try two.withUnsafeMutableBufferPointer { try file.decode("u64", elements: 0..<2, into: $0) }
        XCTAssertEqual(two, [.max, 0])
    }

    func testTypedWriterAPIs() throws {
        let f: [Float] = [1, -2.5, .pi, Float(1e-40 as Double)]
        let d: [Double] = [.pi, -1e300, 0.1]
        let source: [Float] = [1, 1.00390625, 1.01171875, -3.3e38, 65520, 1e-8]
        var writer = SafeTensorsWriter()
        writer.add("f", shape: [2, 2], floats: f)
        writer.add("d", shape: [3], doubles: d)
        writer.add("bf", shape: [6], halfPrecisionFrom: source, dtype: .BF16)
        writer.add("h", shape: [6], halfPrecisionFrom: source, dtype: .F16)
        let path = tempPath("typed.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(try file.floats("f").map(\.bitPattern), f.map(\.bitPattern))
        XCTAssertEqual(try file.doubles("d"), d)
        XCTAssertEqual(try file.info("bf").dtype, .BF16)
        XCTAssertEqual(try file.floats("bf"), source.map { bf16ToFloat(floatToBF16($0)) })
        XCTAssertEqual(try file.floats("bf")[0...2], [1, 1, 1.015625])  // RNE: tie to even, then up
        XCTAssertEqual(try file.info("h").dtype, .F16)
        XCTAssertEqual(try file.floats("h"), source.map { Float(Float16($0)) })
        XCTAssertEqual(try file.floats("h")[4], .infinity)  // 65520 rounds to inf in F16
    }

    func testScalarEmptyAndMetadata() throws {
        let metadata = ["format": "pt", "note": "quote \" backslash \\ newline \n unicode é😀", "empty": ""]
        var writer = SafeTensorsWriter(metadata: metadata)
        writer.add("scalar", shape: [], floats: [3.25])
        writer.add("empty", shape: [0, 3], floats: [])
        writer.add("empty1d", shape: [0], dtype: .BF16, bytes: [])
        writer.add("name with spaces/and \"quotes\" é", shape: [1], int64s: [5])
        let path = tempPath("edge.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.metadata, metadata)

        let scalar = try file.info("scalar")
        XCTAssertEqual(scalar.shape, [])
        XCTAssertEqual(scalar.count, 1)
        XCTAssertEqual(try file.floats("scalar"), [3.25])

        let empty = try file.info("empty")
        XCTAssertEqual(empty.shape, [0, 3])
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(empty.byteCount, 0)
        XCTAssertEqual(try file.floats("empty"), [])
        XCTAssertEqual(try file.doubles("empty1d"), [])
        XCTAssertEqual(try file.rawBytes("empty").count, 0)
        try file.decode("empty", into: UnsafeMutableBufferPointer<Float>(start: nil, count: 0))
        XCTAssertEqual(try file.int64s("name with spaces/and \"quotes\" é"), [5])
    }

    func testNoMetadataAndNoTensors() throws {
        let path = tempPath("nothing.safetensors")
        try SafeTensorsWriter().write(to: path)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(bytes, [8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8))
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.names, [])
        XCTAssertEqual(file.metadata, [:])
    }

    func testDecodeSubrangesAndDestinationChecks() throws {
        let values = (0..<24).map { Float($0) * 0.5 }
        var writer = SafeTensorsWriter()
        writer.add("x", shape: [2, 3, 4], floats: values)
        writer.add("b", shape: [24], halfPrecisionFrom: values, dtype: .BF16)
        let path = tempPath("ranges.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)

        for name in ["x", "b"] {
            var out = [Float](repeating: -1, count: 5)
            try out.withUnsafeMutableBufferPointer { try file.decode(name, elements: 7..<12, into: $0) }
            XCTAssertEqual(out, Array(values[7..<12]))
            var d = [Double](repeating: -1, count: 4)
            try d.withUnsafeMutableBufferPointer { try file.decode(name, elements: 20..<24, into: $0) }
            XCTAssertEqual(d, values[20..<24].map { Double($0) })
            var none = [Float]()
            try none.withUnsafeMutableBufferPointer { try file.decode(name, elements: 24..<24, into: $0) }
        }

        var five = [Float](repeating: 0, count: 5)
        five.withUnsafeMutableBufferPointer { buffer in
            assertSTError({ try file.decode("x", elements: 20..<25, into: buffer) }, fileName: "ranges.safetensors", tensor: "x", mentions: ["out of bounds", "[2, 3, 4]"])
            assertSTError({ try file.decode("x", elements: 0..<4, into: buffer) }, fileName: "ranges.safetensors", tensor: "x", mentions: ["destination holds 5", "4"])
            assertSTError({ try file.decode("x", into: buffer) }, fileName: "ranges.safetensors", tensor: "x", mentions: ["24"])
            assertSTError({ try file.decode("nope", into: buffer) }, fileName: "ranges.safetensors", tensor: "nope", mentions: ["no such tensor"])
        }
        XCTAssertFalse(file.contains("nope"))
        XCTAssertTrue(file.contains("x"))
        assertSTError({ _ = try file.info("nope") }, fileName: "ranges.safetensors", tensor: "nope")
        assertSTError({ _ = try file.rawBytes("nope") }, fileName: "ranges.safetensors", tensor: "nope")
    }

    /// Other writers do not align tensors; reads must not assume alignment.
    func testUnalignedTensorsDecode() throws {
        let bf16: [UInt16] = [0x3F80, 0xC040, 0x4049]
        let f32: [Float] = [1.5, -7]
        let f64: [Double] = [.pi]
        let i32: [Int32] = [-5]
        var data: [UInt8] = [0xAB]           // U8 at [0, 1)
        data += bytesOf(bf16)                // BF16 at [1, 7)
        data += bytesOf(f32)                 // F32 at [7, 15)
        data += bytesOf(f64)                 // F64 at [15, 23)
        data += bytesOf(i32)                 // I32 at [23, 27)
        let header = #"{"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"bf":{"dtype":"BF16","shape":[3],"data_offsets":[1,7]},"f":{"dtype":"F32","shape":[2],"data_offsets":[7,15]},"d":{"dtype":"F64","shape":[],"data_offsets":[15,23]},"i":{"dtype":"I32","shape":[1],"data_offsets":[23,27]}}"#
        let path = try writeRaw(header: header, data: data, to: "unaligned.safetensors")
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(try file.info("bf").dataOffset, 8 + header.utf8.count + 1)
        XCTAssertEqual(try file.floats("bf"), [1, -3, 3.140625])
        XCTAssertEqual(try file.floats("f"), f32)
        XCTAssertEqual(try file.doubles("f"), [1.5, -7])
        XCTAssertEqual(try file.doubles("d"), f64)
        XCTAssertEqual(try file.floats("d"), [Float(Double.pi)])
        XCTAssertEqual(try file.int64s("i"), [-5])
        XCTAssertEqual(try file.int64s("u"), [0xAB])
    }

    func testLargeTensorsTakeTheParallelPathCorrectly() throws {
        let n = parallelDecodeThreshold + 12_345
        let values = (0..<n).map { Float(bitPattern: 0x3F80_0000 &+ (UInt32(truncatingIfNeeded: $0 &* 2654435761) >> 9)) }
        var writer = SafeTensorsWriter()
        writer.add("f", shape: [n], floats: values)
        writer.add("b", shape: [n], halfPrecisionFrom: values, dtype: .BF16)
        let path = tempPath("large.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(try file.floats("f"), values)
        let b = try file.floats("b")
        let raw = try file.rawBytes("b")
        for i in stride(from: 0, to: n, by: 997) {
            XCTAssertEqual(b[i], bf16ToFloat(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
        XCTAssertEqual(b[n - 1], bf16ToFloat(floatToBF16(values[n - 1])))
        // An offset range that is still large: element indices must line up.
        let start = 3
        var out = [Double](repeating: 0, count: n - start)
        try out.withUnsafeMutableBufferPointer { try file.decode("f", elements: start..<n, into: $0) }
        XCTAssertEqual(out.first, Double(values[start]))
        XCTAssertEqual(out.last, Double(values[n - 1]))
        XCTAssertEqual(out[1_000_000], Double(values[start + 1_000_000]))
    }

    /// Offsets past 4 GiB (as in real checkpoints), using a sparse file so no disk space is used.
    func testOffsetsBeyond4GiB() throws {
        let bigBytes = 5 << 30
        var header = #"{"big":{"dtype":"F32","shape":[\#(bigBytes / 4)],"data_offsets":[0,\#(bigBytes)]},"tail":{"dtype":"F64","shape":[2],"data_offsets":[\#(bigBytes),\#(bigBytes + 16)]}}"#
        header += String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
        let path = try writeRaw(header: header, to: "huge.safetensors")
        let total = 8 + header.utf8.count + bigBytes + 16
        let fd = open(path, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        guard ftruncate(fd, off_t(total)) == 0 else {
            close(fd)
            throw XCTSkip("cannot make a sparse 5 GiB file here")
        }
        let tail = bytesOf([1.5, -2.0])
        XCTAssertEqual(tail.withUnsafeBytes { pwrite(fd, $0.baseAddress, 16, off_t(total - 16)) }, 16)
        close(fd)

        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.fileSize, total)
        XCTAssertEqual(try file.info("big").count, bigBytes / 4)
        XCTAssertEqual(try file.info("tail").dataOffset, total - 16)
        XCTAssertEqual(try file.doubles("tail"), [1.5, -2])
        var last = [Float](repeating: 1, count: 4)
        try last.withUnsafeMutableBufferPointer { try file.decode("big", elements: (bigBytes / 4 - 4)..<(bigBytes / 4), into: $0) }
        XCTAssertEqual(last, [0, 0, 0, 0])
    }

    func testFileObjectsCanBeReadFromManyThreads() throws {
        var writer = SafeTensorsWriter()
        for i in 0..<16 { writer.add("t\(i)", shape: [100], floats: (0..<100).map { Float(i * 100 + $0) }) }
        let path = tempPath("threads.safetensors")
        try writer.write(to: path)
        let file = try SafeTensorsFile(path: path)
        let ok = UnsafeMutableBufferPointer<Bool>.allocate(capacity: 16)
        defer { ok.deallocate() }
        let box = UncheckedSendable(ok)
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            box.value[i] = (try? file.floats("t\(i)")) == (0..<100).map { Float(i * 100 + $0) }
        }
        XCTAssertTrue(ok.allSatisfy { $0 })
    }
}
