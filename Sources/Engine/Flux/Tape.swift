import BLAS

/// What one forward pass records for its backward pass (llm.c's activations, per block). Buffers are the
/// forward's own (no copies) except where the forward later overwrites a value in place.
final class FluxTape<T: Scalar> {
    var hidden: Buffer<T>!                 // the latent input (for x_embedder's weight gradient)
    var temb: Buffer<T>!, siluTemb: Buffer<T>!
    var timeProj: Buffer<T>!, timePre: Buffer<T>!
    var guidanceProj: Buffer<T>?, guidancePre: Buffer<T>?
    var textPre: Buffer<T>!
    var doubles: [DoubleBlockTape<T>] = []
    var singles: [SingleBlockTape<T>] = []
    var finalX: Buffer<T>!, finalMod: Buffer<T>!, finalXn: Buffer<T>!
    var finalMean: Buffer<T>?, finalRstd: Buffer<T>?
}

final class DoubleBlockTape<T: Scalar> {
    var x: Buffer<T>!, c: Buffer<T>!                    // block inputs
    var mod: Buffer<T>!, modRaw: Buffer<T>!, modc: Buffer<T>!, modcRaw: Buffer<T>!
    var xn: Buffer<T>!, cn: Buffer<T>!
    var meanX: Buffer<T>?, rstdX: Buffer<T>?, meanC: Buffer<T>?, rstdC: Buffer<T>?
    var preImg: Buffer<T>?, preTxt: Buffer<T>?          // q/k/v before the QK RMSNorm (text: after its masks)
    var txtRaw: Buffer<T>?                              // text q/k/v before its masks (only with add_q/k/v masks)
    var rQI: Buffer<T>?, rKI: Buffer<T>?, rQT: Buffer<T>?, rKT: Buffer<T>?
    var qkv: Buffer<T>!                                  // joint, after RMSNorm and RoPE
    var probs: Buffer<T>?
    var o: Buffer<T>!                                    // attention output before the head mask
    var oImg: Buffer<T>!, oTxt: Buffer<T>!              // after the head mask, per stream
    var aImg: Buffer<T>!, aTxt: Buffer<T>!
    var x1: Buffer<T>!, c1: Buffer<T>!                  // residuals after attention
    var ffImg: FeedForwardTape<T>?, ffTxt: FeedForwardTape<T>?
}

struct FeedForwardTape<T: Scalar> {
    let sn: Buffer<T>, mean: Buffer<T>, rstd: Buffer<T>
    let u: Buffer<T>        // before GELU
    let g: Buffer<T>        // after GELU, before the mask
    let gm: Buffer<T>       // after the mask (input of net.2)
    let f: Buffer<T>
}

final class SingleBlockTape<T: Scalar> {
    var h: Buffer<T>!
    var mod: Buffer<T>!, modRaw: Buffer<T>!
    var hn: Buffer<T>!, mean: Buffer<T>?, rstd: Buffer<T>?
    var f: Buffer<T>!, fPre: Buffer<T>?                  // linear1 output after / before QK norm + RoPE
    var rQ: Buffer<T>?, rK: Buffer<T>?
    var probs: Buffer<T>?
    var a: Buffer<T>!, aPre: Buffer<T>!                  // proj_out input after / before the masks
    var out: Buffer<T>!
}

/// Gradients of a scalar objective with respect to the transformer's inputs and mask values (and, when
/// asked for, its weights), accumulated over calls — e.g. over the steps of a sampler.
public final class FluxGradients<T: Scalar>: @unchecked Sendable {
    public let hidden: Buffer<T>                 // [B, Li, in_channels]
    public let encoderHiddenStates: Buffer<T>    // [B, Lt, joint_attention_dim]
    public let pooledProjections: Buffer<T>      // [B, pooled_projection_dim]
    public var masks: [MaskSite: Buffer<T>]      // d objective / d mask value, per site
    public let weights: FluxWeights<T>?          // same layout as the model's weights

    public convenience init(config: FluxConfig, batch: Int, textTokens: Int, imageTokens: Int, maskSites: [MaskSite], weights: Bool = false) {
        self.init(config: config, batch: batch, textTokens: textTokens, imageTokens: imageTokens, maskSites: maskSites,
                  weightGradients: weights ? FluxWeights<T>.zeros(config: config) : nil)
    }

    /// With an existing weight-gradient accumulator (a training loop reuses one across batches whose
    /// text lengths differ).
    public init(config: FluxConfig, batch: Int, textTokens: Int, imageTokens: Int, maskSites: [MaskSite],
                weightGradients: FluxWeights<T>?) {
        hidden = .zeros(batch * imageTokens * config.inChannels)
        encoderHiddenStates = .zeros(batch * textTokens * config.jointAttentionDim)
        pooledProjections = .zeros(batch * config.pooledProjectionDim)
        masks = Dictionary(uniqueKeysWithValues: maskSites.map { ($0, Buffer<T>.zeros($0.width(config))) })
        weights = weightGradients
    }

    /// Checks that the input-gradient buffers fit a call with this conditioning.
    func check(config: FluxConfig, cond: FluxConditioning<T>) throws {
        let B = cond.batch
        guard hidden.count == B * cond.imageTokens * config.inChannels,
              encoderHiddenStates.count == B * cond.textTokens * config.jointAttentionDim,
              pooledProjections.count == B * config.pooledProjectionDim else {
            throw FluxError.badShape("gradient buffers were made for another batch or sequence length than this call's (\(B) × \(cond.textTokens) text + \(cond.imageTokens) image tokens)")
        }
    }

    public func zero() {
        hidden.zero(); encoderHiddenStates.zero(); pooledProjections.zero()
        for m in masks.values { m.zero() }
        weights?.zero()
    }
}
