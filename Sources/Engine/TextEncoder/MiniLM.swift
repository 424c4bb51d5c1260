import BLAS
import Foundation
import SafeTensors

/// The output of the text encoder for one prompt.
public struct TextEncoding: Sendable {
    /// The token ids that were encoded, [CLS] first and [SEP] last.
    public let tokenIds: [Int]
    /// The last hidden states, row-major [tokens, hiddenSize] (BertModel's last_hidden_state, which
    /// sentence-transformers calls token_embeddings): the model's `encoder_hidden_states`.
    public let hiddenStates: [Float]
    /// The sentence embedding [hiddenSize]: the mean of the hidden states over all tokens ([CLS] and
    /// [SEP] included; a single prompt has no padding), L2-normalised, exactly sentence-transformers'
    /// output for all-MiniLM-L6-v2. The model's `pooled_projections`.
    public let pooled: [Float]

    /// An encoding built by hand (e.g. continuous tokens an attack optimises): `hiddenStates` must hold
    /// `tokenIds.count` rows of `pooled.count` values.
    public init(tokenIds: [Int], hiddenStates: [Float], pooled: [Float]) {
        precondition(hiddenStates.count == tokenIds.count * pooled.count, "hidden states do not match the token count")
        self.tokenIds = tokenIds; self.hiddenStates = hiddenStates; self.pooled = pooled
    }

    /// Number of tokens (rows of `hiddenStates`).
    public var count: Int { tokenIds.count }
    /// Width of each hidden state and of `pooled` (384).
    public var hiddenSize: Int { pooled.count }

    /// The hidden state of token `t` (row t of `hiddenStates`).
    public func hiddenState(_ t: Int) -> ArraySlice<Float> { hiddenStates[t * hiddenSize..<(t + 1) * hiddenSize] }

    /// Cosine similarity of the two sentence embeddings (0 when either is zero). The encoder's own embeddings
    /// are unit vectors, so this is their dot product; hand-built encodings need not be.
    public func cosine(to other: TextEncoding) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for (x, y) in zip(pooled, other.pooled) { dot += Double(x) * Double(y); na += Double(x) * Double(x); nb += Double(y) * Double(y) }
        return na > 0 && nb > 0 ? dot / (na * nb).squareRoot() : 0
    }
}

/// all-MiniLM-L6-v2 (sentence-transformers): the uncased WordPiece tokenizer and the 6-layer BERT encoder
/// (hidden 384, 12 heads of 32, feed-forward 1536, exact-erf GELU, post-LayerNorm with eps 1e-12),
/// Float32, on the engine's kernels. Weights come from `model.safetensors` and `vocab.txt` in one folder,
/// as scripts/fetch_minilm.sh leaves them (see `defaultDirectory()`).
///
/// `encode` allocates its own activations, so one instance may be used from several threads (the
/// worker pool runs one parallel region at a time); change `tokenizer` only before sharing it.
public final class MiniLM: @unchecked Sendable {
    public let directory: String
    /// The tokenizer; set `tokenizer.maxLength` to accept longer prompts (up to `maxPositions`).
    public var tokenizer: WordPieceTokenizer
    public let hiddenSize: Int
    public let layerCount: Int
    public let headCount: Int
    public let intermediateSize: Int
    public let vocabularySize: Int
    /// Length of BERT's learned position table (512): the hard limit on tokens.
    public let maxPositions: Int
    public let layerNormEps: Double

    /// The checkpoint, kept mapped: word-embedding rows are decoded from it for the tokens in use only.
    private let file: SafeTensorsFile
    private let positionEmbeddings: Buffer<Float>  // [maxPositions, hidden]
    private let tokenType0: Buffer<Float>  // [hidden]
    private let embeddingNorm: (weight: Buffer<Float>, bias: Buffer<Float>)
    let layers: [Layer]
    /// Multipliers on the feed-forward units that every `encode` applies (an erased text encoder; see
    /// `setFeedForwardMasks`). Empty for the model as loaded.
    public internal(set) var feedForwardMasks: [Int: [Float]] = [:]
    /// What a multiplier's missing share is filled with, per unit (mean ablation; see `setFeedForwardMasks`).
    /// Layers without an entry fill with 0 (zero ablation).
    public internal(set) var feedForwardFill: [Int: [Float]] = [:]

    struct Layer {
        let qkvWeight: Buffer<Float>  // [3·hidden, hidden]: query, key, value rows stacked
        let qkvBias: Buffer<Float>  // [3·hidden]
        let outWeight: Buffer<Float>  // [hidden, hidden]
        let outBias: Buffer<Float>
        let norm1: (weight: Buffer<Float>, bias: Buffer<Float>)
        let upWeight: Buffer<Float>  // [intermediate, hidden]
        let upBias: Buffer<Float>
        let downWeight: Buffer<Float>  // [hidden, intermediate]
        let downBias: Buffer<Float>
        let norm2: (weight: Buffer<Float>, bias: Buffer<Float>)
    }

    /// Where the weights are looked for by default: $MCE_MINILM if set, else
    /// ${MCE_CACHE:-$HOME/.cache/mce}/minilm (scripts/fetch_minilm.sh's default cache).
    public static func defaultDirectory() -> String {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["MCE_MINILM"], !dir.isEmpty { return dir }
        let cache: String
        if let c = env["MCE_CACHE"], !c.isEmpty {
            cache = c
        } else {
            let home = env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            cache = (home as NSString).appendingPathComponent(".cache/mce")
        }
        return (cache as NSString).appendingPathComponent("minilm")
    }

    /// Loads from `defaultDirectory()`.
    public convenience init() throws { try self.init(directory: MiniLM.defaultDirectory()) }

    /// Loads `model.safetensors` and `vocab.txt` from `directory`. A missing folder or file throws
    /// `TextEncoderError.modelNotFound`, whose message says to run scripts/fetch_minilm.sh.
    public init(directory: String) throws {
        self.directory = directory
        let modelPath = (directory as NSString).appendingPathComponent("model.safetensors")
        let vocabPath = (directory as NSString).appendingPathComponent("vocab.txt")
        for path in [modelPath, vocabPath] where !FileManager.default.fileExists(atPath: path) {
            throw TextEncoderError.modelNotFound(directory: directory, missing: path)
        }
        tokenizer = try WordPieceTokenizer(vocabPath: vocabPath)

        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: modelPath) } catch {
            throw TextEncoderError.invalidModel(path: modelPath, reason: "\(error)")
        }
        self.file = file
        func bad(_ reason: String) -> TextEncoderError { .invalidModel(path: modelPath, reason: reason) }
        func info(_ name: String) throws -> TensorInfo {
            guard file.contains(name) else {
                throw bad("it has no tensor '\(name)' (expected a BertModel state dict without a 'bert.' prefix)")
            }
            return try file.info(name)
        }
        func load(_ name: String, _ shape: [Int]) throws -> Buffer<Float> {
            let i = try info(name)
            guard i.shape == shape else { throw bad("tensor '\(name)' has shape \(i.shape), expected \(shape)") }
            guard i.dtype.isFloatingPoint else { throw bad("tensor '\(name)' has dtype \(i.dtype.rawValue), expected floating point") }
            let b = Buffer<Float>(uninitialized: i.count)
            do { try file.decode(name, into: b.buffer) } catch { throw bad("\(error)") }
            return b
        }

        let word = try info("embeddings.word_embeddings.weight")
        guard word.shape.count == 2, word.dtype.isFloatingPoint else {
            throw bad("embeddings.word_embeddings.weight has shape \(word.shape) and dtype \(word.dtype.rawValue), expected a [vocab, hidden] float matrix")
        }
        vocabularySize = word.shape[0]
        hiddenSize = word.shape[1]
        guard vocabularySize == tokenizer.vocabulary.count else {
            throw bad("its vocabulary has \(vocabularySize) rows but \(vocabPath) has \(tokenizer.vocabulary.count) tokens")
        }
        let position = try info("embeddings.position_embeddings.weight")
        guard position.shape.count == 2, position.shape[1] == hiddenSize else {
            throw bad("embeddings.position_embeddings.weight has shape \(position.shape), expected [positions, \(hiddenSize)]")
        }
        maxPositions = position.shape[0]
        intermediateSize = try info("encoder.layer.0.intermediate.dense.weight").shape.first ?? 0
        var count = 0
        while file.contains("encoder.layer.\(count).attention.self.query.weight") { count += 1 }
        guard count > 0 else { throw bad("it has no encoder layers") }
        layerCount = count

        // Heads and eps from config.json when present (all-MiniLM-L6-v2: 12 heads, eps 1e-12).
        var heads = 12, eps = 1e-12
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        if let data = FileManager.default.contents(atPath: configPath),
           let config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            if let h = config["num_attention_heads"] as? Int { heads = h }
            if let e = config["layer_norm_eps"] as? Double { eps = e }
            if let act = config["hidden_act"] as? String, act != "gelu" {
                throw bad("config.json says hidden_act \"\(act)\"; only BERT's exact \"gelu\" is implemented")
            }
        }
        guard heads > 0, hiddenSize % heads == 0 else { throw bad("hidden size \(hiddenSize) is not divisible by \(heads) heads") }
        headCount = heads
        layerNormEps = eps

        let H = hiddenSize, F = intermediateSize
        positionEmbeddings = try load("embeddings.position_embeddings.weight", [maxPositions, H])
        let tokenTypes = try info("embeddings.token_type_embeddings.weight")
        guard tokenTypes.shape.count == 2, tokenTypes.shape[1] == H, tokenTypes.shape[0] >= 1 else {
            throw bad("embeddings.token_type_embeddings.weight has shape \(tokenTypes.shape), expected [types, \(H)]")
        }
        tokenType0 = try load("embeddings.token_type_embeddings.weight", tokenTypes.shape)
        embeddingNorm = (try load("embeddings.LayerNorm.weight", [H]), try load("embeddings.LayerNorm.bias", [H]))

        var layers: [Layer] = []
        for l in 0..<layerCount {
            let p = "encoder.layer.\(l)."
            let qkvW = Buffer<Float>(uninitialized: 3 * H * H), qkvB = Buffer<Float>(uninitialized: 3 * H)
            for (j, name) in ["query", "key", "value"].enumerated() {
                let w = try load(p + "attention.self.\(name).weight", [H, H])
                let b = try load(p + "attention.self.\(name).bias", [H])
                (qkvW.p + j * H * H).update(from: w.p, count: H * H)
                (qkvB.p + j * H).update(from: b.p, count: H)
            }
            layers.append(Layer(
                qkvWeight: qkvW, qkvBias: qkvB,
                outWeight: try load(p + "attention.output.dense.weight", [H, H]),
                outBias: try load(p + "attention.output.dense.bias", [H]),
                norm1: (try load(p + "attention.output.LayerNorm.weight", [H]), try load(p + "attention.output.LayerNorm.bias", [H])),
                upWeight: try load(p + "intermediate.dense.weight", [F, H]),
                upBias: try load(p + "intermediate.dense.bias", [F]),
                downWeight: try load(p + "output.dense.weight", [H, F]),
                downBias: try load(p + "output.dense.bias", [H]),
                norm2: (try load(p + "output.LayerNorm.weight", [H]), try load(p + "output.LayerNorm.bias", [H]))))
        }
        self.layers = layers
    }

    // MARK: Encoding

    /// Tokenizes and encodes one prompt. Throws `emptyPrompt` for a prompt without words,
    /// `promptTooLong` beyond `tokenizer.maxLength` tokens (256), and, unless `allowUnknown`,
    /// `unknownWords` when WordPiece would have to encode a word as [UNK].
    public func encode(_ prompt: String, allowUnknown: Bool = false) throws -> TextEncoding {
        try encode(tokenIds: tokenIds(prompt, allowUnknown: allowUnknown))
    }

    /// The token ids `encode(_:allowUnknown:)` would encode ([CLS] … [SEP]), with the same checks.
    public func tokenIds(_ prompt: String, allowUnknown: Bool = false) throws -> [Int] {
        let words = tokenizer.words(prompt)
        if words.isEmpty { throw TextEncoderError.emptyPrompt }
        var ids = [tokenizer.clsId]
        for w in words { ids.append(contentsOf: w.ids) }
        ids.append(tokenizer.sepId)
        let limit = min(tokenizer.maxLength, maxPositions)
        if ids.count > limit { throw TextEncoderError.promptTooLong(tokens: ids.count, limit: limit) }
        if !allowUnknown {
            let unknown = words.filter(\.isUnknown).map(\.text)
            if !unknown.isEmpty { throw TextEncoderError.unknownWords(unknown) }
        }
        return ids
    }

    /// Encodes token ids as given (normally [CLS] … [SEP]; nothing is added). At most
    /// min(tokenizer.maxLength, maxPositions) ids, each in 0..<vocabularySize.
    public func encode(tokenIds ids: [Int]) throws -> TextEncoding {
        try encode(batch: [ids])[0]
    }

    /// Encodes several token sequences at once: the dense layers run on all their rows together (far
    /// better GEMM shapes than one short prompt at a time), attention within each sequence. Same results
    /// as encoding them one by one.
    public func encode(batch: [[Int]]) throws -> [TextEncoding] {
        for ids in batch { try validate(ids) }
        if batch.isEmpty { return [] }
        return try run(batch: batch, masks: feedForwardMasks, fill: feedForwardFill, tape: nil)
    }

    /// Throws unless `ids` is a non-empty sequence of vocabulary ids the encoder accepts.
    func validate(_ ids: [Int]) throws {
        let limit = min(tokenizer.maxLength, maxPositions)
        if ids.isEmpty { throw TextEncoderError.emptyTokenIds }
        if ids.count > limit { throw TextEncoderError.promptTooLong(tokens: ids.count, limit: limit) }
        for (i, id) in ids.enumerated() where id < 0 || id >= vocabularySize {
            throw TextEncoderError.invalidTokenId(id: id, position: i, vocabularySize: vocabularySize)
        }
    }

    /// The forward pass of `encode(batch:)` (ids already checked), with optional multipliers on the
    /// feed-forward units of some layers (`masks[l]`: intermediateSize values applied after the GELU: g ↦
    /// m·g + (1 − m)·f with `fill[l]` = f, or 0 where a layer has none) and an optional tape that keeps what
    /// `feedForwardMaskGradients` needs.
    func run(batch: [[Int]], masks: [Int: [Float]], fill: [Int: [Float]] = [:], tape: MiniLMTape?) throws -> [TextEncoding] {
        let R = batch.reduce(0) { $0 + $1.count }, H = hiddenSize, F = intermediateSize
        var offsets: [Int] = []
        var o = 0
        for ids in batch { offsets.append(o); o += ids.count }
        BLASThreads.configureOnce()

        // Embeddings: word + position + token type 0, then LayerNorm.
        let x = Buffer<Float>(uninitialized: R * H)
        for (k, ids) in batch.enumerated() {
            for (t, id) in ids.enumerated() {
                let row = UnsafeMutableBufferPointer(start: x.p + (offsets[k] + t) * H, count: H)
                do {
                    try file.decode("embeddings.word_embeddings.weight", elements: id * H..<(id + 1) * H, into: row)
                } catch {
                    throw TextEncoderError.invalidModel(path: file.path, reason: "\(error)")
                }
                let pos = positionEmbeddings.p + t * H, type0 = tokenType0.p
                for c in 0..<H { row[c] += pos[c] + type0[c] }
            }
        }
        layerNorm(x.p, weight: embeddingNorm.weight.p, bias: embeddingNorm.bias.p, rows: R, C: H, eps: layerNormEps)

        let maxT = batch.map(\.count).max()!
        let qkv = Buffer<Float>(uninitialized: R * 3 * H)
        let context = Buffer<Float>(uninitialized: R * H)
        let scores = Buffer<Float>(uninitialized: headCount * maxT * maxT)
        let up = Buffer<Float>(uninitialized: R * F)
        tape?.offsets = offsets
        tape?.lengths = batch.map(\.count)
        for (l, layer) in layers.enumerated() {
            linear(qkv.p, x.p, layer.qkvWeight.p, layer.qkvBias.p, rows: R, inDim: H, outDim: 3 * H)
            for (k, ids) in batch.enumerated() {
                selfAttention(context.p + offsets[k] * H, qkv: qkv.p + offsets[k] * 3 * H, scratch: scores.p, T: ids.count,
                              heads: headCount, headDim: H / headCount)
            }
            // x = LN(x + context·Woᵀ + bo)
            linear(x.p, context.p, layer.outWeight.p, layer.outBias.p, rows: R, inDim: H, outDim: H, residual: x.p)
            let preNorm1 = tape.map { _ in x.copy() }
            layerNorm(x.p, weight: layer.norm1.weight.p, bias: layer.norm1.bias.p, rows: R, C: H, eps: layerNormEps)
            // x = LN(x + (m ⊙ GELU(x·W1ᵀ + b1))·W2ᵀ + b2), m = 1 unless masked
            linear(up.p, x.p, layer.upWeight.p, layer.upBias.p, rows: R, inDim: H, outDim: F)
            let preGelu = tape.map { _ in up.copy() }
            geluErf(up.p, count: R * F)
            let activation = tape.map { _ in up.copy() }
            if let m = masks[l] {
                precondition(m.count == F, "feed-forward mask of layer \(l) has \(m.count) values, expected \(F)")
                if let f = fill[l] {
                    precondition(f.count == F, "feed-forward fill of layer \(l) has \(f.count) values, expected \(F)")
                    for r in 0..<R { let row = up.p + r * F; for j in 0..<F { row[j] = row[j] * m[j] + (1 - m[j]) * f[j] } }
                } else {
                    for r in 0..<R { let row = up.p + r * F; for j in 0..<F { row[j] *= m[j] } }
                }
            }
            linear(x.p, up.p, layer.downWeight.p, layer.downBias.p, rows: R, inDim: F, outDim: H, residual: x.p)
            if let tape {
                tape.layers.append(MiniLMTape.Layer(qkv: qkv.copy(), preNorm1: preNorm1!, preGelu: preGelu!,
                                                    activation: activation!, preNorm2: x.copy()))
            }
            layerNorm(x.p, weight: layer.norm2.weight.p, bias: layer.norm2.bias.p, rows: R, C: H, eps: layerNormEps)
        }
        tape?.output = x.copy()

        // Per sequence: mean over tokens, then L2 normalisation (torch's normalize: x / max(‖x‖, 1e-12)).
        return batch.enumerated().map { k, ids in
            let T = ids.count, base = x.p + offsets[k] * H
            var mean = [Double](repeating: 0, count: H)
            for t in 0..<T {
                let row = base + t * H
                for c in 0..<H { mean[c] += Double(row[c]) }
            }
            var norm = 0.0
            for c in 0..<H {
                mean[c] /= Double(T)
                norm += mean[c] * mean[c]
            }
            let inv = 1 / max(norm.squareRoot(), 1e-12)
            return TextEncoding(tokenIds: ids, hiddenStates: Array(UnsafeBufferPointer(start: base, count: T * H)),
                                pooled: mean.map { Float($0 * inv) })
        }
    }
}
