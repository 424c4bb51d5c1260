import Foundation
import SafeTensors
import TextEncoder
import XCTest

/// Committed fixtures under Tests/Fixtures/minilm (written by scripts/minilm/generate_fixtures.py).
enum MiniLMFixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("minilm")

    static func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// The committed copy of the model's vocab.txt (so tokenizer tests do not need the weights cache).
    static var vocabPath: String { path("vocab.txt") }

    struct TokenizerCase: Decodable {
        let text: String
        let ids: [Int]
        let tokens: [String]
        let unknown_words: [String]
        let slow_ids: [Int]?
    }

    struct TokenizerCases: Decodable {
        let max_seq_length: Int
        let cases: [TokenizerCase]
    }

    static func tokenizerCases() throws -> TokenizerCases {
        let data = try Data(contentsOf: root.appendingPathComponent("tokenizer_cases.json"))
        return try JSONDecoder().decode(TokenizerCases.self, from: data)
    }
}

/// The real weights, loaded once from MiniLM.defaultDirectory() ($MCE_MINILM or the fetch script's cache).
/// A missing cache is a test failure (with the error's instructions), never a silent skip.
enum SharedModel {
    static let result: Result<MiniLM, Error> = Result { try MiniLM() }

    static func get(file: StaticString = #filePath, line: UInt = #line) -> MiniLM? {
        switch result {
        case .success(let model):
            return model
        case .failure(let error):
            XCTFail("the encoder tests need the all-MiniLM-L6-v2 weights: \(error)", file: file, line: line)
            return nil
        }
    }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var d: Float = 0
    for i in 0..<a.count { d = max(d, abs(a[i] - b[i])) }
    return d
}
