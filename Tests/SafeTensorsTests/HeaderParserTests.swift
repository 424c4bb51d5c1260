import XCTest

@testable import SafeTensors

/// The JSON parser on its own: grammar, escapes, limits.
final class HeaderParserTests: XCTestCase {
    private func parse(_ text: String) throws -> JSONValue {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { raw in try JSONParser.parse(raw) }
    }

    private func parseBytes(_ bytes: [UInt8]) throws -> JSONValue {
        try bytes.withUnsafeBytes { raw in try JSONParser.parse(raw) }
    }

    func testValuesAndOrder() throws {
        let value = try parse(#" { "b" : [1, -2.5e3, true, false, null], "a": {"x": "y"} }  "#)
        guard case .object(let members) = value else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.key), ["b", "a"])  // file order kept
        XCTAssertEqual(value.compactJSON, #"{"b":[1,-2.5e3,true,false,null],"a":{"x":"y"}}"#)
    }

    func testDuplicateKeysAreKept() throws {
        guard case .object(let members) = try parse(#"{"a":1,"a":2}"#) else { return XCTFail() }
        XCTAssertEqual(members.count, 2)
    }

    func testStringEscapes() throws {
        guard case .string(let s) = try parse(#""q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00\u0001""#) else { return XCTFail() }
        XCTAssertEqual(s, "q\"b\\s/n\nt\tué😀\u{01}")
        guard case .string(let raw) = try parse("\"héllo 😀\"") else { return XCTFail() }
        XCTAssertEqual(raw, "héllo 😀")
    }

    func testQuotingMatchesSerdeJSON() {
        XCTAssertEqual(jsonQuoted("a\"b\\c\n\u{01}\u{7F}é/"), "\"a\\\"b\\\\c\\n\\u0001\u{7F}é/\"")
    }

    func testIntegers() throws {
        XCTAssertEqual(try parse("0").nonNegativeInt, 0)
        XCTAssertEqual(try parse("9223372036854775807").nonNegativeInt, Int.max)
        XCTAssertNil(try parse("9223372036854775808").nonNegativeInt)  // too big, no trap
        XCTAssertNil(try parse("-1").nonNegativeInt)
        XCTAssertNil(try parse("1.0").nonNegativeInt)
        XCTAssertNil(try parse("1e3").nonNegativeInt)
        XCTAssertNil(try parse("\"1\"").nonNegativeInt)
    }

    func testSyntaxErrors() {
        let bad = ["", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]", "01", "1.", "-", "1e",
                   "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"a\u{01}\"",
                   "{'a':1}", "{\"a\":1} x", "NaN", "{a:1}", "\u{FEFF}{}"]
        for text in bad {
            XCTAssertThrowsError(try parse(text), "accepted: \(text.debugDescription)")
        }
        XCTAssertThrowsError(try parseBytes([0x22, 0xFF, 0x22]), "invalid UTF-8 accepted")
        XCTAssertThrowsError(try parseBytes([0x22, 0xC3, 0x22]), "truncated UTF-8 accepted")
    }

    func testDeepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertThrowsError(try parse(deep)) { error in
            XCTAssertTrue((error as? JSONSyntaxError)?.message.contains("nesting") ?? false)
        }
        XCTAssertNoThrow(try parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)))
    }
}
