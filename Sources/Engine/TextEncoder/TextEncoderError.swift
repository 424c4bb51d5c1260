/// Everything that can go wrong loading or running the MiniLM text encoder. The descriptions are meant to
/// be shown to a user as they are: they say what was wrong and what to do about it.
public enum TextEncoderError: Error, CustomStringConvertible, Equatable {
    /// The weights folder or a file in it is missing (run scripts/fetch_minilm.sh).
    case modelNotFound(directory: String, missing: String)
    /// model.safetensors exists but is not the expected BERT checkpoint (wrong tensors, shapes, dtype).
    case invalidModel(path: String, reason: String)
    /// vocab.txt cannot be read or lacks the special tokens.
    case invalidVocabulary(path: String, reason: String)
    /// The prompt holds no words once whitespace and control characters are removed.
    case emptyPrompt
    /// More tokens (including [CLS] and [SEP]) than the encoder accepts.
    case promptTooLong(tokens: Int, limit: Int)
    /// WordPiece mapped these words to [UNK] (and unknown words were not allowed).
    case unknownWords([String])
    /// `encode(tokenIds:)` got an empty list.
    case emptyTokenIds
    /// `encode(tokenIds:)` got an id outside the vocabulary.
    case invalidTokenId(id: Int, position: Int, vocabularySize: Int)

    public var description: String {
        switch self {
        case let .modelNotFound(directory, missing):
            return "MiniLM text encoder weights not found: \(missing) does not exist (model folder \(directory)). "
                + "Run scripts/fetch_minilm.sh to download and verify them into the cache "
                + "(${MCE_CACHE:-~/.cache/mce}/minilm), or set MCE_MINILM to a folder holding model.safetensors and vocab.txt."
        case let .invalidModel(path, reason):
            return "\(path) is not a usable all-MiniLM-L6-v2 checkpoint: \(reason). "
                + "Re-run scripts/fetch_minilm.sh to fetch and verify the weights again."
        case let .invalidVocabulary(path, reason):
            return "cannot use the WordPiece vocabulary \(path): \(reason)"
        case .emptyPrompt:
            return "the prompt is empty (nothing but whitespace or control characters): there is nothing to encode"
        case let .promptTooLong(tokens, limit):
            return "the prompt is too long: it is \(tokens) tokens including [CLS] and [SEP], and the text encoder takes at most "
                + "\(limit) (all-MiniLM-L6-v2's max_seq_length; sentence-transformers would silently cut the rest). Shorten the prompt."
        case let .unknownWords(words):
            let list = words.map { "\"\($0)\"" }.joined(separator: ", ")
            return "the prompt contains words the vocabulary does not know: \(list) (WordPiece can only encode them as [UNK]). "
                + "Rephrase them, or allow unknown words to encode them as [UNK]."
        case .emptyTokenIds:
            return "no token ids to encode (expected at least [CLS] … [SEP])"
        case let .invalidTokenId(id, position, size):
            return "token id \(id) at position \(position) is outside the vocabulary (valid ids are 0..<\(size))"
        }
    }
}
