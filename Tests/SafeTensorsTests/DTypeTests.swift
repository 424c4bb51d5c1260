import XCTest

@testable import SafeTensors

final class DTypeTests: XCTestCase {
    func testByteSizesAndNames() {
        let expected: [DType: Int] = [
            .BOOL: 1, .U8: 1, .I8: 1, .U16: 2, .I16: 2, .U32: 4, .I32: 4, .U64: 8, .I64: 8,
            .F16: 2, .BF16: 2, .F32: 4, .F64: 8, .F8_E4M3: 1, .F8_E5M2: 1, .F8_E8M0: 1,
            .F8_E4M3FNUZ: 1, .F8_E5M2FNUZ: 1, .C64: 8,
        ]
        XCTAssertEqual(Set(DType.allCases), Set(expected.keys))
        for dtype in DType.allCases {
            XCTAssertEqual(dtype.byteSize, expected[dtype], "\(dtype)")
            XCTAssertEqual(DType(rawValue: dtype.rawValue), dtype)
        }
        XCTAssertNil(DType(rawValue: "f32"), "dtype names are case-sensitive")
        XCTAssertNil(DType(rawValue: "F4"))
    }

    func testReferenceRankIsTheRustEnumOrder() {
        // Rust `Dtype` declaration order, minus the sub-byte types.
        let rust: [DType] = [.BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ,
                             .I16, .U16, .F16, .BF16, .I32, .U32, .F32, .C64, .F64, .I64, .U64]
        XCTAssertEqual(rust.count, DType.allCases.count)
        XCTAssertEqual(rust.map(\.referenceRank), rust.map(\.referenceRank).sorted())
        XCTAssertEqual(Set(rust.map(\.referenceRank)).count, rust.count)
    }

    func testF16DecodeMatchesFloat16ForAllBitPatterns() {
        for bits in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let got = f16ToFloat(bits)
            if expected.isNaN {
                XCTAssertTrue(got.isNaN, "0x\(String(bits, radix: 16))")
                XCTAssertEqual(got.sign, expected.sign)
            } else {
                XCTAssertEqual(got.bitPattern, expected.bitPattern, "0x\(String(bits, radix: 16))")
            }
        }
    }

    func testBF16DecodeIsTheHighHalfOfFloat32() {
        XCTAssertEqual(bf16ToFloat(0x3F80), 1)
        XCTAssertEqual(bf16ToFloat(0xC000), -2)
        XCTAssertEqual(bf16ToFloat(0x7F80), .infinity)
        XCTAssertTrue(bf16ToFloat(0x7FC0).isNaN)
        XCTAssertEqual(bf16ToFloat(0x0001), Float(bitPattern: 0x0001_0000))  // subnormal
    }

    func testFloatToBF16RoundsToNearestEven() {
        func bf(_ bits: UInt32) -> UInt16 { floatToBF16(Float(bitPattern: bits)) }
        XCTAssertEqual(floatToBF16(1), 0x3F80)
        XCTAssertEqual(bf(0x3F80_7FFF), 0x3F80)  // below half: down
        XCTAssertEqual(bf(0x3F80_8000), 0x3F80)  // tie, even stays
        XCTAssertEqual(bf(0x3F81_8000), 0x3F82)  // tie, odd rounds up to even
        XCTAssertEqual(bf(0x3F80_8001), 0x3F81)  // above half: up
        XCTAssertEqual(bf(0xBF80_8001), 0xBF81)  // sign symmetric
        XCTAssertEqual(floatToBF16(.greatestFiniteMagnitude), 0x7F80)  // overflows to +inf, as torch
        XCTAssertEqual(floatToBF16(.infinity), 0x7F80)
        XCTAssertEqual(floatToBF16(-.infinity), 0xFF80)
        XCTAssertEqual(floatToBF16(-0.0), 0x8000)
        XCTAssertTrue(bf16ToFloat(floatToBF16(.nan)).isNaN)
        // A NaN whose payload lives only in the low half must not become infinity.
        XCTAssertTrue(bf16ToFloat(bf(0x7F80_0001)).isNaN)
        // Every bfloat16 value survives the round trip exactly.
        for bits in 0...UInt16.max where !bf16ToFloat(bits).isNaN {
            XCTAssertEqual(floatToBF16(bf16ToFloat(bits)), bits)
        }
    }

    func testFP8DecodersMatchTorch() throws {
        let tables: [DType: [Float]] = [
            .F8_E4M3: f8E4M3Table, .F8_E5M2: f8E5M2Table, .F8_E4M3FNUZ: f8E4M3FNUZTable,
            .F8_E5M2FNUZ: f8E5M2FNUZTable, .F8_E8M0: f8E8M0Table,
        ]
        for (dtype, reference) in torchFP8Tables {
            let ours = try XCTUnwrap(tables[dtype])
            XCTAssertEqual(ours.count, 256)
            for i in 0..<256 {
                let expected = Float(bitPattern: reference[i])
                XCTAssertTrue(sameFloat(ours[i], expected), "\(dtype) byte 0x\(String(i, radix: 16)): \(ours[i]) vs torch \(expected)")
            }
        }
        XCTAssertEqual(f8E4M3Table[0x7E], 448)
        XCTAssertEqual(f8E5M2Table[0x7C], .infinity)
    }
}
