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

    public init(miniLM: MiniLM) { self.miniLM = miniLM }

    public convenience init(directory: String? = nil) throws {
        self.init(miniLM: try MiniLM(directory: directory ?? MiniLM.defaultDirectory()))
    }

    /// The empty prompt ("an unconditioned image"): [CLS] [SEP]. Training drops captions to it, and
    /// classifier-free guidance and the erasure objective's `null` target use it.
    public func encodeNull() throws -> TextEncoding {
        try encode("", allowUnknown: true)
    }

    public func encode(_ prompt: String, allowUnknown: Bool = false) throws -> TextEncoding {
        lock.lock()
        if let e = cache[prompt] { lock.unlock(); return e }
        lock.unlock()
        let e: TextEncoding
        if prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            let t = miniLM.tokenizer
            e = try miniLM.encode(tokenIds: [t.clsId, t.sepId])
        } else {
            e = try miniLM.encode(prompt, allowUnknown: allowUnknown)
        }
        lock.lock()
        cache[prompt] = e
        lock.unlock()
        return e
    }

    /// Conditioning for a batch of prompts (one per sample). Text sequences are zero-padded to the longest
    /// in the batch (FLUX passes no attention mask; padded tokens become the context embedder's bias).
    public func conditioning(
        _ encodings: [TextEncoding], config: FluxConfig, imageIds: [Double]
    ) throws -> FluxConditioning<Float> {
        let B = encodings.count, D = config.jointAttentionDim
        guard let first = encodings.first else { throw FluxError.badInput("no prompts") }
        guard first.hiddenSize == D, config.pooledProjectionDim == D else {
            throw FluxError.badInput("the model expects \(config.jointAttentionDim)-d text states and \(config.pooledProjectionDim)-d pooled embeddings; MiniLM gives \(first.hiddenSize)")
        }
        let lt = encodings.map(\.count).max()!
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
