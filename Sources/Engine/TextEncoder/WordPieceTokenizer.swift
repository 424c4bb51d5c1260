import Foundation

/// BERT's uncased WordPiece tokenizer, as all-MiniLM-L6-v2 configures it, matching Hugging Face's
/// tokenizers-backed `BertTokenizer` (the tokenizer sentence-transformers runs) id for id:
///
/// 1. the special tokens [PAD] [UNK] [CLS] [SEP] [MASK] are split out of the raw text first (exact,
///    case-sensitive matches, as HF's added tokens with `normalized: false`);
/// 2. BertNormalizer: drop NUL, U+FFFD and control characters (categories Cc, Cf, Co, Cs except tab,
///    newline, carriage return), turn every white-space character into a space, put spaces around CJK
///    ideographs, strip accents (NFD, then remove nonspacing marks, Mn), lower-case (per character);
/// 3. BertPreTokenizer: split on white space, and make every punctuation character (ASCII punctuation or
///    Unicode category P*) a word of its own;
/// 4. WordPiece: greedy longest-match-first with "##" continuation pieces; a word longer than 100
///    characters, or one that cannot be covered by pieces, becomes a single [UNK].
///
/// The only known differences from transformers' older pure-Python BertTokenizer are the ones the Rust
/// implementation has as well (per-character lower-casing, so a final capital sigma becomes σ, not ς;
/// unassigned code points are kept, so they turn a word into [UNK]); the fixtures record both.
/// Character categories come from Swift's Unicode tables, which are newer than the Rust crate's, so code
/// points assigned in recent Unicode versions may in rare cases be classified differently.
public struct WordPieceTokenizer: Sendable {
    /// The vocabulary: `vocabulary[id]` is the token with that id (the line of vocab.txt).
    public let vocabulary: [String]
    /// The most tokens, including [CLS] and [SEP], that `tokenize` accepts: sentence-transformers'
    /// max_seq_length for this model (256; BERT's position table would allow 512).
    public var maxLength: Int = 256

    public let padId: Int
    public let unknownId: Int
    public let clsId: Int
    public let sepId: Int
    public let maskId: Int
    /// The ids of the empty (null) prompt: [CLS] [SEP].
    public var emptyPromptIds: [Int] { [clsId, sepId] }
    /// Words with more characters than this become [UNK] (BERT's max_input_chars_per_word).
    public let maxInputCharsPerWord = 100

    /// Token (UTF-8 bytes) → id, for pieces that start a word.
    private let wordStarts: [[UInt8]: Int]
    /// Continuation pieces "##xyz", keyed by the UTF-8 bytes of "xyz".
    private let continuations: [[UInt8]: Int]
    /// The special tokens that are matched in the raw text, as scalars, with their ids.
    private let specials: [(scalars: [Unicode.Scalar], id: Int)]

    /// Loads a BERT vocab.txt: one token per line, the id being the line number (from 0).
    public init(vocabPath: String) throws {
        guard let data = FileManager.default.contents(atPath: vocabPath) else {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: vocabPath, isDirectory: &isDir) {
                throw TextEncoderError.invalidVocabulary(path: vocabPath, reason: isDir.boolValue ? "it is a directory" : "it cannot be read")
            }
            throw TextEncoderError.invalidVocabulary(path: vocabPath, reason: "no such file")
        }
        var lines = data.split(separator: 0x0A, omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }  // the file's final newline
        var tokens: [String] = []
        tokens.reserveCapacity(lines.count)
        for (i, line) in lines.enumerated() {
            var bytes = Array(line)
            if bytes.last == 0x0D { bytes.removeLast() }  // tolerate CRLF files
            guard let token = String(validating: bytes, as: UTF8.self) else {
                throw TextEncoderError.invalidVocabulary(path: vocabPath, reason: "line \(i + 1) is not valid UTF-8")
            }
            tokens.append(token)
        }
        try self.init(vocabulary: tokens, source: vocabPath)
    }

    /// A tokenizer over an in-memory vocabulary (`vocabulary[id]` = token). It must contain [PAD], [UNK],
    /// [CLS], [SEP] and [MASK].
    public init(vocabulary: [String], source: String = "<vocabulary>") throws {
        self.vocabulary = vocabulary
        var starts: [[UInt8]: Int] = [:], conts: [[UInt8]: Int] = [:]
        starts.reserveCapacity(vocabulary.count)
        // Later duplicates win, as in transformers' load_vocab.
        for (id, token) in vocabulary.enumerated() {
            let bytes = Array(token.utf8)
            starts[bytes] = id
            if bytes.count > 2, bytes[0] == 0x23, bytes[1] == 0x23 { conts[Array(bytes[2...])] = id }
        }
        func special(_ name: String) throws -> Int {
            guard let id = starts[Array(name.utf8)] else {
                throw TextEncoderError.invalidVocabulary(path: source, reason: "it has no \(name) token (is it a BERT WordPiece vocab.txt?)")
            }
            return id
        }
        padId = try special("[PAD]")
        unknownId = try special("[UNK]")
        clsId = try special("[CLS]")
        sepId = try special("[SEP]")
        maskId = try special("[MASK]")
        wordStarts = starts
        continuations = conts
        specials = [("[PAD]", padId), ("[UNK]", unknownId), ("[CLS]", clsId), ("[SEP]", sepId), ("[MASK]", maskId)]
            .map { (Array($0.0.unicodeScalars), $0.1) }
    }

    // MARK: Public API

    /// Token ids of `text` with [CLS] first and [SEP] last. Throws `promptTooLong` when there are more than
    /// `maxLength` of them (use `tokenIds(_:)` for no limit). Unknown words become [UNK] (see `unknownWords`).
    public func tokenize(_ text: String) throws -> [Int] {
        let ids = tokenIds(text)
        if ids.count > maxLength { throw TextEncoderError.promptTooLong(tokens: ids.count, limit: maxLength) }
        return ids
    }

    /// Token ids of `text` with [CLS] first and [SEP] last, without any length limit.
    public func tokenIds(_ text: String) -> [Int] {
        var ids = [clsId]
        for word in words(text) { ids.append(contentsOf: word.ids) }
        ids.append(sepId)
        return ids
    }

    /// The tokens of `tokenIds(text)` as strings, [CLS] and [SEP] included ("##" marks continuation pieces).
    public func tokens(_ text: String) -> [String] { tokenIds(text).map { vocabulary[$0] } }

    /// The words of `text` (lower-cased, accents stripped, as the tokenizer sees them) that WordPiece can
    /// only encode as [UNK]. Empty when every word has pieces in the vocabulary. A literal "[UNK]" in the
    /// text is a special token, not an unknown word.
    public func unknownWords(_ text: String) -> [String] {
        words(text).filter(\.isUnknown).map(\.text)
    }

    /// Number of words (after normalisation and splitting) in `text`; 0 for an empty or blank prompt.
    public func wordCount(_ text: String) -> Int { words(text).count }

    // MARK: Pipeline

    struct Word {
        var text: String
        var ids: [Int]
        var isUnknown: Bool
    }

    /// Splits out special tokens, then normalises, pre-tokenises and WordPiece-encodes the rest.
    func words(_ text: String) -> [Word] {
        let scalars = Array(text.unicodeScalars)
        var out: [Word] = []
        var segmentStart = 0, i = 0
        while i < scalars.count {
            if scalars[i] == "[", let (length, id) = specialToken(at: i, in: scalars) {
                encodeSegment(scalars[segmentStart..<i], into: &out)
                out.append(Word(text: String(String.UnicodeScalarView(scalars[i..<i + length])), ids: [id], isUnknown: false))
                i += length
                segmentStart = i
            } else {
                i += 1
            }
        }
        encodeSegment(scalars[segmentStart..<scalars.count], into: &out)
        return out
    }

    private func specialToken(at i: Int, in scalars: [Unicode.Scalar]) -> (Int, Int)? {
        for s in specials where i + s.scalars.count <= scalars.count {
            if scalars[i..<i + s.scalars.count].elementsEqual(s.scalars) { return (s.scalars.count, s.id) }
        }
        return nil
    }

    private func encodeSegment(_ segment: ArraySlice<Unicode.Scalar>, into out: inout [Word]) {
        if segment.isEmpty { return }
        let normalized = Self.normalize(segment)
        var word: [Unicode.Scalar] = []
        func flush() {
            if !word.isEmpty { out.append(wordPiece(word)); word.removeAll(keepingCapacity: true) }
        }
        for c in normalized {
            if Self.isWhitespace(c) {
                flush()
            } else if Self.isPunctuation(c) {
                flush()
                word.append(c)
                flush()
            } else {
                word.append(c)
            }
        }
        flush()
    }

    /// Greedy longest-match-first WordPiece over one word.
    private func wordPiece(_ word: [Unicode.Scalar]) -> Word {
        let text = String(String.UnicodeScalarView(word))
        if word.count > maxInputCharsPerWord { return Word(text: text, ids: [unknownId], isUnknown: true) }
        let bytes = Array(text.utf8)
        // Byte offset of each scalar boundary, so pieces are cut at whole characters.
        var offsets = [0]
        offsets.reserveCapacity(word.count + 1)
        for c in word { offsets.append(offsets.last! + UTF8.width(c)) }
        var ids: [Int] = []
        var start = 0
        while start < word.count {
            let table = start == 0 ? wordStarts : continuations
            var end = word.count
            var found: Int?
            while end > start {
                if let id = table[Array(bytes[offsets[start]..<offsets[end]])] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else { return Word(text: text, ids: [unknownId], isUnknown: true) }
            ids.append(id)
            start = end
        }
        return Word(text: text, ids: ids, isUnknown: false)
    }

    // MARK: Normalisation (BertNormalizer with clean_text, handle_chinese_chars, strip_accents, lowercase)

    static func normalize(_ input: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        // Clean text and space out CJK ideographs.
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(input.count + 8)
        var ascii = true
        for c in input {
            let v = c.value
            if v == 0 || v == 0xFFFD || isControl(c) { continue }
            if isWhitespace(c) {
                cleaned.append(" ")
            } else if isChineseChar(v) {
                cleaned.append(" ")
                cleaned.append(c)
                cleaned.append(" ")
                ascii = false
            } else {
                cleaned.append(c)
                if v >= 0x80 { ascii = false }
            }
        }
        if ascii {
            return cleaned.map { c in
                let v = c.value
                return (v >= 0x41 && v <= 0x5A) ? Unicode.Scalar(v + 32)! : c
            }
        }
        // Strip accents: canonical decomposition, then drop nonspacing marks. Then lower-case per character
        // (full mappings, no context: "Σ" → "σ" everywhere, as the Rust normalizer does).
        let decomposed = String(String.UnicodeScalarView(cleaned)).decomposedStringWithCanonicalMapping
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(cleaned.count)
        for c in decomposed.unicodeScalars {
            if c.properties.generalCategory == .nonspacingMark { continue }
            if c.value < 0x80 {
                let v = c.value
                out.append((v >= 0x41 && v <= 0x5A) ? Unicode.Scalar(v + 32)! : c)
            } else if c.properties.changesWhenLowercased {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// Tab, newline and carriage return, and every character with the Unicode White_Space property.
    static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if v == 0x20 || v == 0x09 || v == 0x0A || v == 0x0D { return true }
        if v < 0x80 { return false }
        return c.properties.isWhitespace
    }

    /// "Other" characters (Cc, Cf, Co, Cs; not unassigned ones) except tab, newline and carriage return.
    static func isControl(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if v == 0x09 || v == 0x0A || v == 0x0D { return false }
        if v >= 0x20 && v < 0x7F { return false }
        switch c.properties.generalCategory {
        case .control, .format, .privateUse, .surrogate: return true
        default: return false
        }
    }

    /// ASCII punctuation (!"#$%&'()*+,-./ :;<=>?@ [\]^_` {|}~) or any Unicode punctuation (P*).
    static func isPunctuation(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if (v >= 33 && v <= 47) || (v >= 58 && v <= 64) || (v >= 91 && v <= 96) || (v >= 123 && v <= 126) { return true }
        if v < 0x80 { return false }
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    /// The CJK ideograph blocks BERT spaces out (the ranges of HF tokenizers' BertNormalizer).
    static func isChineseChar(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B920...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }
}
