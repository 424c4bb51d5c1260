import Foundation
import TextEncoder
import XCTest

final class TokenizerTests: XCTestCase {
    static let tokenizer: Result<WordPieceTokenizer, Error> = Result { try WordPieceTokenizer(vocabPath: MiniLMFixtures.vocabPath) }

    func tokenizer() throws -> WordPieceTokenizer { try Self.tokenizer.get() }

    func testVocabulary() throws {
        let tok = try tokenizer()
        XCTAssertEqual(tok.vocabulary.count, 30522)
        XCTAssertEqual([tok.padId, tok.unknownId, tok.clsId, tok.sepId, tok.maskId], [0, 100, 101, 102, 103])
        XCTAssertEqual(tok.maxLength, 256)
        XCTAssertEqual(tok.maxInputCharsPerWord, 100)
    }

    /// Every fixture string gives exactly the ids, tokens and unknown words of HF's tokenizer.
    func testMatchesHuggingFace() throws {
        let tok = try tokenizer()
        let fixture = try MiniLMFixtures.tokenizerCases()
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 60)
        XCTAssertEqual(fixture.max_seq_length, tok.maxLength)
        var failures = 0
        for c in fixture.cases {
            let ids = tok.tokenIds(c.text)
            if ids != c.ids {
                failures += 1
                XCTFail("\(c.text.debugDescription): ids \(ids) (\(tok.tokens(c.text))) != HF \(c.ids) (\(c.tokens))")
                continue
            }
            XCTAssertEqual(tok.tokens(c.text), c.tokens, c.text.debugDescription)
            XCTAssertEqual(tok.unknownWords(c.text), c.unknown_words, c.text.debugDescription)
            if c.ids.count <= tok.maxLength {
                XCTAssertEqual(try tok.tokenize(c.text), c.ids, c.text.debugDescription)
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) of \(fixture.cases.count) strings tokenised differently")
    }

    /// The fixtures cover what the issue asks for: pieces, [UNK], CJK, accents, a > 256-token string.
    func testFixtureCoverage() throws {
        let cases = try MiniLMFixtures.tokenizerCases().cases
        XCTAssertTrue(cases.contains { $0.tokens.contains { $0.hasPrefix("##") } })
        XCTAssertTrue(cases.contains { !$0.unknown_words.isEmpty })
        XCTAssertTrue(cases.contains { $0.text.unicodeScalars.contains { (0x4E00...0x9FFF).contains($0.value) } })
        XCTAssertTrue(cases.contains { $0.text.count > 100 && !$0.text.contains(" ") })
        XCTAssertTrue(cases.contains { $0.ids.count > 256 })
        XCTAssertTrue(cases.contains { $0.slow_ids != nil }, "the fixtures should record where the pure-Python tokenizer differs")
    }

    func testTooLongThrows() throws {
        let tok = try tokenizer()
        let text = Array(repeating: "cat", count: 300).joined(separator: " ")
        XCTAssertEqual(tok.tokenIds(text).count, 302)
        XCTAssertThrowsError(try tok.tokenize(text)) { error in
            XCTAssertEqual(error as? TextEncoderError, .promptTooLong(tokens: 302, limit: 256))
            let message = "\(error)"
            XCTAssertTrue(message.contains("302 tokens") && message.contains("at most 256"), message)
        }
        // Exactly at the limit is fine.
        let fits = Array(repeating: "cat", count: 254).joined(separator: " ")
        XCTAssertEqual(try tok.tokenize(fits).count, 256)
    }

    func testUnknownWords() throws {
        let tok = try tokenizer()
        XCTAssertEqual(tok.unknownWords("a photo of a sneaker"), [])
        XCTAssertEqual(tok.unknownWords("a 🥰 kitten and ∑"), ["🥰", "∑"])
        XCTAssertEqual(tok.tokens("a 🥰 kitten"), ["[CLS]", "a", "[UNK]", "kitten", "[SEP]"])
        // Rare words are split into known pieces, not unknown.
        XCTAssertEqual(tok.unknownWords("antidisestablishmentarianism"), [])
    }

    func testEmptyAndBlank() throws {
        let tok = try tokenizer()
        for text in ["", "   ", "\n\t\r", "\u{200B}\u{0007}"] {
            XCTAssertEqual(tok.tokenIds(text), [101, 102], text.debugDescription)
            XCTAssertEqual(tok.wordCount(text), 0)
        }
    }

    func testMissingVocabulary() {
        XCTAssertThrowsError(try WordPieceTokenizer(vocabPath: "/nonexistent/vocab.txt")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/vocab.txt") && "\(error)".contains("no such file"), "\(error)")
        }
        XCTAssertThrowsError(try WordPieceTokenizer(vocabulary: ["a", "b"])) { error in
            XCTAssertTrue("\(error)".contains("[PAD]"), "\(error)")
        }
    }
}
