// A small strict JSON parser for safetensors headers and index files, plus the validation of a
// header against the format rules.
//
// Why not JSONSerialization: it silently merges duplicate keys (a duplicate tensor name must be an
// error), loses the distinction between 1 and 1.0, and needs a Data copy of the header. This parser
// works directly on the mapped bytes, keeps object keys in file order, and keeps number literals
// verbatim so integers are checked exactly (offsets are u64 in the format).

/// A parsed JSON value. Objects keep their members in file order, duplicates included, so callers
/// decide what a duplicate means.
indirect enum JSONValue {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(String)  // the literal text, validated against the JSON number grammar
    case bool(Bool)
    case null

    var typeName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }

    /// The value as a non-negative Int if it is an integer literal that fits ("1.0", "1e3" are not).
    var nonNegativeInt: Int? {
        guard case .number(let text) = self, !text.isEmpty else { return nil }
        var result = 0
        for byte in text.utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, o1) = result.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            result = sum
        }
        return result
    }

    /// Compact JSON rendering, used in error messages and to stringify index metadata.
    var compactJSON: String {
        switch self {
        case .object(let members):
            return "{" + members.map { jsonQuoted($0.key) + ":" + $0.value.compactJSON }.joined(separator: ",") + "}"
        case .array(let items):
            return "[" + items.map(\.compactJSON).joined(separator: ",") + "]"
        case .string(let s): return jsonQuoted(s)
        case .number(let n): return n
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        }
    }

    /// Rendering for error messages: long values are cut so a message stays one readable line.
    var shortDescription: String {
        let text = compactJSON
        return text.count > 80 ? String(text.prefix(77)) + "..." : text
    }
}

/// Quotes a string the way serde_json does (escapes `"`, `\`, and control characters only; other
/// characters, including non-ASCII, are written as UTF-8). The writer relies on this matching the
/// Rust reference byte for byte.
func jsonQuoted(_ s: String) -> String {
    var out = [UInt8]()
    out.reserveCapacity(s.utf8.count + 2)
    out.append(UInt8(ascii: "\""))
    let hex = Array("0123456789abcdef".utf8)
    for byte in s.utf8 {
        switch byte {
        case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
        case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
        case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
        case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
        case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
        case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
        case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
        case 0..<0x20:
            out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
        default: out.append(byte)
        }
    }
    out.append(UInt8(ascii: "\""))
    return String(decoding: out, as: UTF8.self)
}

struct JSONSyntaxError: Error {
    let message: String
    let offset: Int
}

/// Recursive-descent JSON parser over a byte buffer. Strict RFC 8259 (no comments, no trailing
/// commas, no NaN), with a nesting limit so hostile input cannot overflow the stack.
struct JSONParser {
    static let maxDepth = 128

    private let bytes: UnsafeRawBufferPointer
    private var pos = 0
    private var depth = 0

    /// Parses one JSON value that must fill `bytes` apart from surrounding whitespace.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONSyntaxError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.pos != bytes.count {
            throw parser.error("unexpected \(parser.describeCurrent()) after the end of the JSON value")
        }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func error(_ message: String) -> JSONSyntaxError { JSONSyntaxError(message: message, offset: pos) }

    private func describeCurrent() -> String {
        guard pos < bytes.count else { return "end of input" }
        let b = bytes[pos]
        if b >= 0x20 && b < 0x7F { return "character '\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x" + String(b, radix: 16, uppercase: true)
    }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    private mutating func expect(_ char: UInt8, _ what: String) throws(JSONSyntaxError) {
        guard pos < bytes.count, bytes[pos] == char else {
            throw error("expected \(what) but found \(describeCurrent())")
        }
        pos += 1
    }

    private mutating func parseValue() throws(JSONSyntaxError) -> JSONValue {
        guard pos < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try parseLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try parseLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("unexpected \(describeCurrent()), expected a value")
        }
    }

    private mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        if depth > Self.maxDepth { throw error("nesting deeper than \(Self.maxDepth) levels") }
    }

    private mutating func parseObject() throws(JSONSyntaxError) -> JSONValue {
        try enter()
        pos += 1  // '{'
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
            pos += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else {
                throw error("expected a string key but found \(describeCurrent())")
            }
            let key = try parseString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':'")
            skipWhitespace()
            let value = try parseValue()
            members.append((key, value))
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input inside an object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; break }
            throw error("expected ',' or '}' but found \(describeCurrent())")
        }
        depth -= 1
        return .object(members)
    }

    private mutating func parseArray() throws(JSONSyntaxError) -> JSONValue {
        try enter()
        pos += 1  // '['
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
            pos += 1
            depth -= 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input inside an array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; break }
            throw error("expected ',' or ']' but found \(describeCurrent())")
        }
        depth -= 1
        return .array(items)
    }

    private mutating func parseLiteral(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        let matches = pos + count <= bytes.count
            && (0..<count).allSatisfy { bytes[pos + $0] == word.utf8Start[$0] }
        guard matches else { throw error("invalid literal, expected '\(word)'") }
        pos += count
    }

    private mutating func parseNumber() throws(JSONSyntaxError) -> String {
        let start = pos
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        guard isDigit(pos) else { throw error("invalid number: expected a digit") }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if isDigit(pos) { throw error("invalid number: leading zero") }
        } else {
            while isDigit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            guard isDigit(pos) else { throw error("invalid number: expected a digit after '.'") }
            while isDigit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard isDigit(pos) else { throw error("invalid number: expected a digit in the exponent") }
            while isDigit(pos) { pos += 1 }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
    }

    private mutating func parseString() throws(JSONSyntaxError) -> String {
        pos += 1  // opening quote
        let start = pos
        // Fast path: no escapes, so the string is a slice of the input (validated as UTF-8).
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
                pos += 1
                return try makeString(slice, at: start)
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("unescaped control character 0x\(String(b, radix: 16)) in a string") }
            pos += 1
        }
        guard pos < bytes.count else { throw JSONSyntaxError(message: "unterminated string", offset: start - 1) }
        // Slow path with escapes.
        var buffer = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                guard let s = String(validating: buffer, as: UTF8.self) else {
                    throw JSONSyntaxError(message: "invalid UTF-8 in a string", offset: start)
                }
                return s
            }
            if b < 0x20 { throw error("unescaped control character 0x\(String(b, radix: 16)) in a string") }
            if b != UInt8(ascii: "\\") {
                buffer.append(b)
                pos += 1
                continue
            }
            pos += 1
            guard pos < bytes.count else { break }
            let escaped = bytes[pos]
            pos += 1
            switch escaped {
            case UInt8(ascii: "\""): buffer.append(0x22)
            case UInt8(ascii: "\\"): buffer.append(0x5C)
            case UInt8(ascii: "/"): buffer.append(0x2F)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = UInt32(try parseHex4())
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw error("lone leading surrogate in \\u escape")
                    }
                    pos += 2
                    let low = UInt32(try parseHex4())
                    guard (0xDC00..<0xE000).contains(low) else { throw error("invalid low surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw error("lone trailing surrogate in \\u escape")
                }
                guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                buffer.append(contentsOf: Array(String(Character(unicode)).utf8))
            default:
                pos -= 1
                throw error("invalid escape '\\\(describeCurrent())'")
            }
        }
        throw JSONSyntaxError(message: "unterminated string", offset: start - 1)
    }

    private mutating func parseHex4() throws(JSONSyntaxError) -> UInt16 {
        guard pos + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let b = bytes[pos]
            let digit: UInt8
            switch b {
            case 0x30...0x39: digit = b - 0x30
            case 0x41...0x46: digit = b - 0x41 + 10
            case 0x61...0x66: digit = b - 0x61 + 10
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | UInt16(digit)
            pos += 1
        }
        return value
    }

    private func makeString(_ raw: UnsafeRawBufferPointer, at offset: Int) throws(JSONSyntaxError) -> String {
        // ASCII is by far the common case (tensor names); skip the validating initializer for it.
        if raw.allSatisfy({ $0 < 0x80 }) { return String(decoding: raw, as: UTF8.self) }
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw JSONSyntaxError(message: "invalid UTF-8 in a string", offset: offset)
        }
        return s
    }
}

// MARK: - Header validation

/// A validated header: tensors with offsets relative to the data buffer, and the metadata.
struct ParsedHeader {
    struct Entry {
        let name: String
        let dtype: DType
        let shape: [Int]
        let begin: Int
        let end: Int
    }
    var entries: [Entry]
    var metadata: [String: String]
}

enum HeaderParser {
    static let maxHeaderSize = 100_000_000

    /// Validates a header exactly as the reference reader does (see flux.md §6.1), with an error
    /// that names the file, the tensor and what was expected.
    ///
    /// - Parameters:
    ///   - header: the N header bytes (after the 8-byte length).
    ///   - dataLength: the size of the byte buffer that follows the header.
    ///   - file: the path used in errors.
    static func parse(header: UnsafeRawBufferPointer, dataLength: Int, file: String) throws(SafeTensorsError) -> ParsedHeader {
        func fail(_ tensor: String?, _ message: String) -> SafeTensorsError {
            SafeTensorsError(file: file, tensor: tensor, message: message)
        }

        guard let first = header.first, first == UInt8(ascii: "{") else {
            let found = header.isEmpty ? "an empty header" : "byte 0x\(String(header[0], radix: 16, uppercase: true))"
            throw fail(nil, "header must be a JSON object starting with '{', found \(found) (not a safetensors file?)")
        }
        let root: JSONValue
        do {
            root = try JSONParser.parse(header)
        } catch {
            throw fail(nil, "header is not valid JSON: \(error.message) at byte \(error.offset) of the \(header.count)-byte header")
        }
        guard case .object(let members) = root else {
            throw fail(nil, "header must be a JSON object, found \(root.typeName)")
        }

        var metadata: [String: String] = [:]
        var seen = Set<String>()
        seen.reserveCapacity(members.count)
        var entries: [ParsedHeader.Entry] = []
        entries.reserveCapacity(members.count)

        for (name, value) in members {
            guard seen.insert(name).inserted else {
                if name == "__metadata__" { throw fail(nil, "'__metadata__' appears more than once in the header") }
                throw fail(name, "duplicate tensor name in the header")
            }
            if name == "__metadata__" {
                metadata = try parseMetadata(value, fail: fail)
                continue
            }
            entries.append(try parseEntry(name: name, value: value, dataLength: dataLength, fail: fail))
        }

        try checkLayout(entries, dataLength: dataLength, fail: fail)
        return ParsedHeader(entries: entries, metadata: metadata)
    }

    private static func parseMetadata(_ value: JSONValue, fail: (String?, String) -> SafeTensorsError) throws(SafeTensorsError) -> [String: String] {
        switch value {
        case .null:
            return [:]  // the reference reads `"__metadata__": null` as "no metadata"
        case .object(let pairs):
            var result: [String: String] = [:]
            for (key, v) in pairs {
                guard case .string(let s) = v else {
                    throw fail(nil, "__metadata__ values must be strings, but '\(key)' is \(v.typeName) (\(v.shortDescription))")
                }
                guard result.updateValue(s, forKey: key) == nil else {
                    throw fail(nil, "__metadata__ key '\(key)' appears more than once")
                }
            }
            return result
        default:
            throw fail(nil, "__metadata__ must be an object of strings, found \(value.typeName)")
        }
    }

    private static func parseEntry(
        name: String, value: JSONValue, dataLength: Int, fail: (String?, String) -> SafeTensorsError
    ) throws(SafeTensorsError) -> ParsedHeader.Entry {
        guard case .object(let fields) = value else {
            throw fail(name, "entry must be an object with dtype, shape and data_offsets, found \(value.typeName) (\(value.shortDescription))")
        }
        var dtypeValue: JSONValue?, shapeValue: JSONValue?, offsetsValue: JSONValue?
        for (key, v) in fields {
            switch key {
            case "dtype", "shape", "data_offsets":
                let slot: JSONValue?
                switch key {
                case "dtype": slot = dtypeValue; dtypeValue = v
                case "shape": slot = shapeValue; shapeValue = v
                default: slot = offsetsValue; offsetsValue = v
                }
                if slot != nil { throw fail(name, "field '\(key)' appears more than once") }
            default:
                continue  // unknown fields are ignored, as by the reference (serde without deny_unknown_fields)
            }
        }

        // dtype
        guard let dtypeValue else { throw fail(name, "missing field 'dtype'") }
        guard case .string(let dtypeName) = dtypeValue else {
            throw fail(name, "dtype must be a string, found \(dtypeValue.typeName)")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            if DType.unsupportedNames.contains(dtypeName) {
                throw fail(name, "dtype '\(dtypeName)' is a sub-byte type, which this reader does not support")
            }
            let known = DType.allCases.map(\.rawValue).joined(separator: ", ")
            throw fail(name, "unknown dtype '\(dtypeName)' (expected one of \(known))")
        }

        // shape
        guard let shapeValue else { throw fail(name, "missing field 'shape'") }
        guard case .array(let dims) = shapeValue else {
            throw fail(name, "shape must be an array of non-negative integers, found \(shapeValue.typeName)")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for dim in dims {
            guard let d = dim.nonNegativeInt else {
                throw fail(name, "shape must be an array of non-negative integers, found \(shapeValue.shortDescription)")
            }
            shape.append(d)
        }

        // data_offsets
        guard let offsetsValue else { throw fail(name, "missing field 'data_offsets'") }
        guard case .array(let offs) = offsetsValue, offs.count == 2,
              let begin = offs[0].nonNegativeInt, let end = offs[1].nonNegativeInt
        else {
            throw fail(name, "data_offsets must be [begin, end] with non-negative integers, found \(offsetsValue.shortDescription)")
        }
        guard begin <= end else {
            throw fail(name, "data_offsets [\(begin), \(end)] have begin > end")
        }

        // size = numel * byteSize, with overflow checks (hostile shapes must not trap).
        var numel = 1
        for d in shape {
            let (p, overflow) = numel.multipliedReportingOverflow(by: d)
            if overflow { throw fail(name, "shape \(shape) is too large (element count overflows)") }
            numel = p
        }
        let (bytes, overflow) = numel.multipliedReportingOverflow(by: dtype.byteSize)
        if overflow { throw fail(name, "shape \(shape) (\(dtype.rawValue)) is too large (byte count overflows)") }
        guard end - begin == bytes else {
            throw fail(name, "declared shape \(shape) (\(dtype.rawValue)) needs \(bytes) bytes but data_offsets [\(begin), \(end)] span \(end - begin)")
        }
        guard end <= dataLength else {
            throw fail(name, "data_offsets [\(begin), \(end)] extend past the end of the data buffer (\(dataLength) bytes after the header): the file is truncated or the offsets are wrong")
        }
        return ParsedHeader.Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// Tensors sorted by offset must tile [0, dataLength) exactly: no holes, no overlaps, no
    /// trailing bytes (the reference's InvalidOffset / MetadataIncompleteBuffer).
    private static func checkLayout(_ entries: [ParsedHeader.Entry], dataLength: Int, fail: (String?, String) -> SafeTensorsError) throws(SafeTensorsError) {
        let sorted = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var expected = 0
        var previous: ParsedHeader.Entry?
        for entry in sorted {
            if entry.begin > expected {
                let after = previous.map { "after tensor '\($0.name)' which ends at \($0.end)" } ?? "at the start of the data buffer"
                throw fail(entry.name, "data_offsets [\(entry.begin), \(entry.end)] leave a hole of \(entry.begin - expected) bytes \(after); tensors must be contiguous")
            }
            if entry.begin < expected, let previous {
                throw fail(entry.name, "data_offsets [\(entry.begin), \(entry.end)] overlap tensor '\(previous.name)' at [\(previous.begin), \(previous.end)]")
            }
            expected = entry.end
            previous = entry
        }
        if expected != dataLength {
            // expected < dataLength here, since each end was checked against dataLength.
            throw fail(nil, "data buffer has \(dataLength) bytes but the tensors cover only \(expected); \(dataLength - expected) trailing bytes belong to no tensor")
        }
    }
}
