import Foundation
import SafeTensors
import TextEncoder
import XCTest

/// The Swift encoder against sentence-transformers on CPU (fixtures from scripts/minilm/generate_fixtures.py).
/// Needs the real weights: run scripts/fetch_minilm.sh first (a missing cache fails these tests).
final class EncoderTests: XCTestCase {
    let tolerance: Float = 1e-4

    func testMatchesSentenceTransformers() throws {
        guard let model = SharedModel.get() else { return }
        XCTAssertEqual(model.hiddenSize, 384)
        XCTAssertEqual(model.layerCount, 6)
        XCTAssertEqual(model.headCount, 12)
        XCTAssertEqual(model.intermediateSize, 1536)
        XCTAssertEqual(model.maxPositions, 512)

        let fixture = try SafeTensorsFile(path: MiniLMFixtures.path("encoder_cases.safetensors"))
        let prompts = try JSONDecoder().decode([String].self, from: Data(fixture.metadata["prompts"]!.utf8))
        XCTAssertGreaterThanOrEqual(prompts.count, 8)
        var worstHidden: Float = 0, worstPooled: Float = 0
        for (i, prompt) in prompts.enumerated() {
            let ids = try fixture.int64s("\(i).token_ids").map { Int($0) }
            let hidden = try fixture.floats("\(i).last_hidden_state")
            let pooled = try fixture.floats("\(i).pooled")

            XCTAssertEqual(try model.tokenizer.tokenize(prompt), ids, prompt)
            let out = try model.encode(prompt)
            XCTAssertEqual(out.tokenIds, ids, prompt)
            XCTAssertEqual(out.count, ids.count)
            XCTAssertEqual(out.hiddenStates.count, ids.count * 384)
            XCTAssertEqual(out.pooled.count, 384)
            let dh = maxAbsDiff(out.hiddenStates, hidden), dp = maxAbsDiff(out.pooled, pooled)
            worstHidden = max(worstHidden, dh)
            worstPooled = max(worstPooled, dp)
            XCTAssertLessThanOrEqual(dh, tolerance, "\(prompt): hidden states differ by \(dh)")
            XCTAssertLessThanOrEqual(dp, tolerance, "\(prompt): pooled embedding differs by \(dp)")
            let norm = out.pooled.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertEqual(norm, 1, accuracy: 1e-5)

            // The token-id entry point gives the same result.
            let again = try model.encode(tokenIds: ids)
            XCTAssertEqual(again.hiddenStates, out.hiddenStates, prompt)
        }
        print("MiniLM vs sentence-transformers: max |Δ| hidden \(worstHidden), pooled \(worstPooled) over \(prompts.count) prompts")
    }

    func testEmptyPromptThrows() throws {
        guard let model = SharedModel.get() else { return }
        for prompt in ["", "   ", "\n\t ", "\u{200B}"] {
            XCTAssertThrowsError(try model.encode(prompt), prompt.debugDescription) { error in
                XCTAssertEqual(error as? TextEncoderError, .emptyPrompt)
                XCTAssertTrue("\(error)".contains("empty"), "\(error)")
            }
        }
        XCTAssertThrowsError(try model.encode(tokenIds: [])) { XCTAssertEqual($0 as? TextEncoderError, .emptyTokenIds) }
    }

    func testTooLongPromptThrows() throws {
        guard let model = SharedModel.get() else { return }
        let prompt = Array(repeating: "a red cat", count: 100).joined(separator: " ")  // 302 tokens
        XCTAssertThrowsError(try model.encode(prompt)) { error in
            XCTAssertEqual(error as? TextEncoderError, .promptTooLong(tokens: 302, limit: 256))
            XCTAssertTrue("\(error)".contains("302 tokens") && "\(error)".contains("at most 256"), "\(error)")
        }
        XCTAssertThrowsError(try model.encode(tokenIds: [Int](repeating: 1037, count: 257))) { error in
            XCTAssertEqual(error as? TextEncoderError, .promptTooLong(tokens: 257, limit: 256))
        }
        // The full 256 tokens encode.
        let fits = Array(repeating: "cat", count: 254).joined(separator: " ")
        XCTAssertEqual(try model.encode(fits).count, 256)
    }

    func testUnknownWordsThrowUnlessAllowed() throws {
        guard let model = SharedModel.get() else { return }
        let prompt = "a 🥰 kitten"
        XCTAssertThrowsError(try model.encode(prompt)) { error in
            XCTAssertEqual(error as? TextEncoderError, .unknownWords(["🥰"]))
            let message = "\(error)"
            XCTAssertTrue(message.contains("prompt contains words the vocabulary does not know: \"🥰\""), message)
        }
        let out = try model.encode(prompt, allowUnknown: true)
        XCTAssertEqual(out.tokenIds, [101, 1037, 100, 18401, 102])  // [CLS] a [UNK] kitten [SEP]
    }

    func testInvalidTokenIdThrows() throws {
        guard let model = SharedModel.get() else { return }
        XCTAssertThrowsError(try model.encode(tokenIds: [101, 30522, 102])) { error in
            XCTAssertEqual(error as? TextEncoderError, .invalidTokenId(id: 30522, position: 1, vocabularySize: 30522))
        }
        XCTAssertThrowsError(try model.encode(tokenIds: [101, -1, 102]))
    }

    func testMissingModelDirectory() {
        let dir = "/nonexistent/minilm-\(getpid())"
        XCTAssertThrowsError(try MiniLM(directory: dir)) { error in
            XCTAssertEqual(error as? TextEncoderError, .modelNotFound(directory: dir, missing: dir + "/model.safetensors"))
            let message = "\(error)"
            XCTAssertTrue(message.contains("scripts/fetch_minilm.sh") && message.contains(dir), message)
        }
    }

    func testWrongCheckpointIsRejected() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("minilm-bad-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: MiniLMFixtures.vocabPath, toPath: dir + "/vocab.txt")
        var writer = SafeTensorsWriter()
        writer.add("embeddings.word_embeddings.weight", shape: [30522, 4], floats: [Float](repeating: 0, count: 30522 * 4))
        try writer.write(to: dir + "/model.safetensors")
        XCTAssertThrowsError(try MiniLM(directory: dir)) { error in
            guard case .invalidModel(let path, let reason)? = error as? TextEncoderError else {
                return XCTFail("expected invalidModel, got \(error)")
            }
            XCTAssertEqual(path, dir + "/model.safetensors")
            XCTAssertTrue(reason.contains("embeddings.position_embeddings.weight"), reason)
            XCTAssertTrue("\(error)".contains("scripts/fetch_minilm.sh"), "\(error)")
        }
        // Not a safetensors file at all.
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        XCTAssertThrowsError(try MiniLM(directory: dir)) { error in
            guard case .invalidModel? = error as? TextEncoderError else { return XCTFail("expected invalidModel, got \(error)") }
        }
    }

    func testDefaultDirectory() {
        // MCE_MINILM wins; otherwise the fetch script's cache path.
        let dir = MiniLM.defaultDirectory()
        if let env = ProcessInfo.processInfo.environment["MCE_MINILM"], !env.isEmpty {
            XCTAssertEqual(dir, env)
        } else {
            XCTAssertTrue(dir.hasSuffix("/minilm"), dir)
        }
    }

    /// The committed vocab.txt is the one the weights come with.
    func testCommittedVocabularyMatchesCache() throws {
        guard SharedModel.get() != nil else { return }
        let cached = FileManager.default.contents(atPath: (MiniLM.defaultDirectory() as NSString).appendingPathComponent("vocab.txt"))
        let committed = FileManager.default.contents(atPath: MiniLMFixtures.vocabPath)
        XCTAssertNotNil(committed)
        XCTAssertEqual(cached, committed, "Tests/Fixtures/minilm/vocab.txt differs from the cached model's vocab.txt")
    }
}

final class EncoderSpeedTests: XCTestCase {
    /// Prints the time to encode a 10-token prompt (run with `-c release` for meaningful numbers).
    func testEncodeSpeed() throws {
        guard let model = SharedModel.get() else { return }
        let prompt = "a red cat sitting on a blue sofa"
        XCTAssertEqual(try model.tokenizer.tokenize(prompt).count, 10)
        for _ in 0..<3 { _ = try model.encode(prompt) }  // warm up
        var times: [Double] = []
        for _ in 0..<30 {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try model.encode(prompt)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        times.sort()
        let long = Array(repeating: "a red cat sitting on a blue sofa", count: 31).joined(separator: " ")  // 250 tokens
        let start = DispatchTime.now().uptimeNanoseconds
        let out = try model.encode(long)
        let longMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        print(String(format: "MiniLM encode, 10 tokens: median %.2f ms, min %.2f ms; %d tokens: %.1f ms",
                     times[times.count / 2], times[0], out.count, longMs))
        XCTAssertLessThan(times[times.count / 2], 1000)
    }
}
