import BLAS
import Flux
import Foundation
import TextEncoder

/// Turns prompts into the transformer's text conditioning with MiniLM: last hidden states as
/// `encoder_hidden_states` (384-d per token) and the normalised mean-pooled embedding as
/// `pooled_projections`. Encodings are cached (training sees the same captions many times).
public final class PromptEncoder: @unchecked Sendable {
    public let miniLM: MiniLM
    private var cache: [String: TextEncoding] = [:]
    private let lock = NSLock()

    /// Text sequences are zero-padded to at least this many tokens, so a prompt's conditioning — and hence
    /// its sample — does not depend on which other prompts share its batch (FLUX passes no attention mask;
    /// padded tokens are attended to). The subject chooses it: the world's is its longest caption.
    public var paddedLength: Int

    public init(miniLM: MiniLM, paddedLength: Int) {
        self.miniLM = miniLM
        self.paddedLength = paddedLength
    }

    /// The empty prompt ("an unconditioned image"): [CLS] [SEP]. Training drops captions to it, and
    /// classifier-free guidance and the erasure objective's `null` target use it.
    public func encodeNull() throws -> TextEncoding {
        try encode("", allowUnknown: true)
    }

    public func encode(_ prompt: String, allowUnknown: Bool = false) throws -> TextEncoding {
        try encode([prompt], allowUnknown: allowUnknown)[0]
    }

    /// Encodes prompts, the ones not in the cache in one batched MiniLM call.
    public func encode(_ prompts: [String], allowUnknown: Bool = false) throws -> [TextEncoding] {
        lock.lock()
        let missing = Array(Set(prompts.filter { cache[$0] == nil })).sorted()
        lock.unlock()
        if !missing.isEmpty {
            let ids = try missing.map { p -> [Int] in
                if p.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                    return miniLM.tokenizer.emptyPromptIds
                }
                return try miniLM.tokenIds(p, allowUnknown: allowUnknown)
            }
            let encs = try miniLM.encode(batch: ids)
            lock.lock()
            for (p, e) in zip(missing, encs) { cache[p] = e }
            lock.unlock()
        }
        lock.lock()
        defer { lock.unlock() }
        return prompts.map { cache[$0]! }
    }

    /// Conditioning for a batch of prompts (one per sample). Text sequences are zero-padded to `paddedLength`
    /// or the longest in the batch (FLUX passes no attention mask; padded tokens become the context embedder's bias).
    public func conditioning(
        _ encodings: [TextEncoding], config: FluxConfig, imageIds: [Double]
    ) throws -> FluxConditioning<Float> {
        let B = encodings.count, D = config.jointAttentionDim
        guard let first = encodings.first else { throw FluxError.badInput("no prompts") }
        guard first.hiddenSize == D, config.pooledProjectionDim == D else {
            throw FluxError.badInput("the model expects \(config.jointAttentionDim)-d text states and \(config.pooledProjectionDim)-d pooled embeddings; MiniLM gives \(first.hiddenSize)")
        }
        let lt = max(paddedLength, encodings.map(\.count).max()!)
        let ehs = Buffer<Float>.zeros(B * lt * D)
        let pooled = Buffer<Float>(uninitialized: B * D)
        for (b, e) in encodings.enumerated() {
            e.hiddenStates.withUnsafeBufferPointer { (ehs.p + b * lt * D).update(from: $0.baseAddress!, count: e.count * D) }
            e.pooled.withUnsafeBufferPointer { (pooled.p + b * D).update(from: $0.baseAddress!, count: D) }
        }
        return try FluxConditioning(config: config, batch: B, encoderHiddenStates: ehs, pooledProjections: pooled,
                                    guidance: nil, txtIds: Packing.textIds(count: lt), imgIds: imageIds)
    }
}
