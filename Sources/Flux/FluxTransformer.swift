import BLAS

/// Everything a forward pass needs besides the latent and σ: text conditioning, guidance and positions.
/// It is fixed over a sampling run, so RoPE tables are built once.
public struct FluxConditioning<T: Scalar>: @unchecked Sendable {
    public let batch: Int
    public let textTokens: Int          // Lt
    public let imageTokens: Int         // Li
    public let encoderHiddenStates: Buffer<T>   // [B, Lt, joint_attention_dim]
    public let pooledProjections: Buffer<T>     // [B, pooled_projection_dim]
    public let guidance: [Double]?              // [B], the guidance scale itself (e.g. 3.5)
    public let rope: RopeTables<T>              // for ids = cat(txt_ids, img_ids)

    public init(
        config: FluxConfig, batch: Int, encoderHiddenStates: Buffer<T>, pooledProjections: Buffer<T>,
        guidance: [Double]?, txtIds: [Double], imgIds: [Double]
    ) throws {
        let axes = config.axesDimsRope.count
        guard txtIds.count % axes == 0, imgIds.count % axes == 0 else {
            throw FluxError.badInput("txt_ids/img_ids must have \(axes) columns (one per RoPE axis)")
        }
        let lt = txtIds.count / axes, li = imgIds.count / axes
        guard batch > 0 else { throw FluxError.badInput("batch must be ≥ 1") }
        guard li > 0 else { throw FluxError.badInput("img_ids is empty: at least one image token is needed") }
        guard encoderHiddenStates.count == batch * lt * config.jointAttentionDim else {
            throw FluxError.badInput(
                "encoder_hidden_states has \(encoderHiddenStates.count) values, expected [\(batch), \(lt), \(config.jointAttentionDim)] (txt_ids has \(lt) rows)")
        }
        guard pooledProjections.count == batch * config.pooledProjectionDim else {
            throw FluxError.badInput("pooled_projections has \(pooledProjections.count) values, expected [\(batch), \(config.pooledProjectionDim)]")
        }
        if config.guidanceEmbeds {
            guard let g = guidance, g.count == batch else {
                throw FluxError.badInput("this model has guidance embeddings (guidance_embeds = true): a guidance value per sample is required")
            }
        } else if guidance != nil {
            throw FluxError.badInput("this model has no guidance embeddings (guidance_embeds = false): do not pass guidance")
        }
        for v in txtIds + imgIds where !v.isFinite { throw FluxError.badInput("txt_ids/img_ids contain a non-finite value") }
        self.batch = batch; textTokens = lt; imageTokens = li
        self.encoderHiddenStates = encoderHiddenStates; self.pooledProjections = pooledProjections
        self.guidance = guidance
        rope = RopeTables(ids: txtIds + imgIds, S: lt + li, axesDims: config.axesDimsRope)
    }
}

/// The FLUX.1 transformer (diffusers `FluxTransformer2DModel.forward`), batch-first, over flat buffers.
public final class FluxTransformer<T: Scalar>: @unchecked Sendable {
    public let weights: FluxWeights<T>
    public var config: FluxConfig { weights.config }

    public init(weights: FluxWeights<T>) { self.weights = weights }

    /// Velocity prediction v(x, σ) for packed latents `hidden` [B, Li, in_channels]; returns [B, Li, out_channels].
    /// `sigma` holds σ ∈ [0, 1] per sample (the model scales it by 1000 itself).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forward(
        hidden: UnsafePointer<T>, sigma: [Double], cond: FluxConditioning<T>, masks: MaskSet<T> = MaskSet()
    ) throws -> Buffer<T> {
        let cfg = config
        let B = cond.batch, Lt = cond.textTokens, Li = cond.imageTokens
        let d = cfg.dim
        guard sigma.count == B else { throw FluxError.badInput("timestep must have one value per sample (\(B)), got \(sigma.count)") }
        for s in sigma where !s.isFinite { throw FluxError.badInput("timestep is not finite") }
        for (site, m) in masks.values {
            try site.validate(for: cfg)
            guard m.count == site.width(cfg) else {
                throw FluxError.badInput("mask '\(site)' has \(m.count) values, expected \(site.width(cfg))")
            }
        }
        let top = weights.top
        // Embed the image tokens, the text tokens and the conditioning vector.
        let x = Buffer<T>(uninitialized: B * Li * d)
        top.xEmbedder.forward(x.p, hidden, rows: B * Li)
        let c = Buffer<T>(uninitialized: B * Lt * d)
        top.contextEmbedder.forward(c.p, cond.encoderHiddenStates.p, rows: B * Lt)
        let temb = timeTextEmbedding(sigma: sigma, cond: cond)
        let siluTemb = Buffer<T>(uninitialized: B * d)
        siluForward(siluTemb.p, temb.p, count: B * d)

        for i in 0..<cfg.numLayers {
            try doubleBlock(i, x: x, c: c, siluTemb: siluTemb, cond: cond, masks: masks)
        }
        let S = Lt + Li
        let h = Buffer<T>(uninitialized: B * S * d)
        joinStreams(h.p, ldj: d, txt: c.p, img: x.p, B: B, Lt: Lt, Li: Li, C: d)
        for i in 0..<cfg.numSingleLayers {
            try singleBlock(i, h: h, siluTemb: siluTemb, cond: cond, masks: masks)
        }
        splitStreams(h.p, ldj: d, txt: nil, img: x.p, B: B, Lt: Lt, Li: Li, C: d)

        // Output head: AdaLayerNormContinuous (scale first, then shift) and proj_out.
        let e = Buffer<T>(uninitialized: B * 2 * d)
        top.normOut.forward(e.p, siluTemb.p, rows: B)
        let xn = Buffer<T>(uninitialized: B * Li * d)
        adaNormForward(xn.p, x.p, shift: e.p + d, scale: e.p, modStride: 2 * d, rows: B * Li, tokensPerSample: Li, C: d)
        let out = Buffer<T>(uninitialized: B * Li * cfg.outputChannels)
        top.projOut.forward(out.p, xn.p, rows: B * Li)
        return out
    }

    /// temb = timestep_embedder(Proj(1000σ)) [+ guidance_embedder(Proj(1000g))] + text_embedder(pooled).
    func timeTextEmbedding(sigma: [Double], cond: FluxConditioning<T>) -> Buffer<T> {
        let top = weights.top, d = config.dim, B = cond.batch
        let P = FluxConfig.timeProjDim
        let temb = Buffer<T>.zeros(B * d)
        let proj = Buffer<T>(uninitialized: B * P)
        let hidden = Buffer<T>(uninitialized: B * d)
        func mlp(_ l1: LinearWeights<T>, _ l2: LinearWeights<T>, _ input: UnsafePointer<T>) {
            l1.forward(hidden.p, input, rows: B)
            siluForward(hidden.p, hidden.p, count: B * d)
            let y = Buffer<T>(uninitialized: B * d)
            l2.forward(y.p, hidden.p, rows: B)
            for i in 0..<(B * d) { temb[i] += y[i] }
        }
        for b in 0..<B { timestepProjection(sigma[b] * 1000, into: proj.p + b * P) }
        mlp(top.timeLinear1, top.timeLinear2, proj.p)
        if let g = cond.guidance, let g1 = top.guidanceLinear1, let g2 = top.guidanceLinear2 {
            for b in 0..<B { timestepProjection(g[b] * 1000, into: proj.p + b * P) }
            mlp(g1, g2, proj.p)
        }
        mlp(top.textLinear1, top.textLinear2, cond.pooledProjections.p)
        return temb
    }

    /// Modulation vectors: linear(SiLU(temb)), optionally masked per output.
    private func modulation(_ lin: LinearWeights<T>, _ siluTemb: Buffer<T>, B: Int, mask: Buffer<T>?) -> Buffer<T> {
        let m = Buffer<T>(uninitialized: B * lin.outDim)
        lin.forward(m.p, siluTemb.p, rows: B)
        if let mask { scaleColumns(m.p, ld: lin.outDim, rows: B, cols: lin.outDim, by: mask.p) }
        return m
    }

    /// One double-stream block, updating x (image) and c (text) in place.
    func doubleBlock(_ i: Int, x: Buffer<T>, c: Buffer<T>, siluTemb: Buffer<T>, cond: FluxConditioning<T>, masks: MaskSet<T>) throws {
        let w = try weights.doubleBlock(i)
        let cfg = config, B = cond.batch, Lt = cond.textTokens, Li = cond.imageTokens, S = Lt + Li
        let d = cfg.dim, H = cfg.numAttentionHeads, D = cfg.attentionHeadDim, m = cfg.mlpDim
        let mod = modulation(w.norm1, siluTemb, B: B, mask: masks[.norm1, i])
        let modc = modulation(w.norm1Context, siluTemb, B: B, mask: masks[.norm1Context, i])

        // Attention over the joint [text; image] sequence.
        let xn = Buffer<T>(uninitialized: B * Li * d), cn = Buffer<T>(uninitialized: B * Lt * d)
        adaNormForward(xn.p, x.p, shift: mod.p, scale: mod.p + d, modStride: 6 * d, rows: B * Li, tokensPerSample: Li, C: d)
        adaNormForward(cn.p, c.p, shift: modc.p, scale: modc.p + d, modStride: 6 * d, rows: B * Lt, tokensPerSample: Lt, C: d)
        let qkvImg = Buffer<T>(uninitialized: B * Li * 3 * d), qkvTxt = Buffer<T>(uninitialized: B * Lt * 3 * d)
        w.qkv.forward(qkvImg.p, xn.p, rows: B * Li)
        w.addQKV.forward(qkvTxt.p, cn.p, rows: B * Lt)
        rmsNormHeadsForward(qkvImg.p, ld: 3 * d, w: w.normQ.p, rows: B * Li, heads: H, D: D)
        rmsNormHeadsForward(qkvImg.p + d, ld: 3 * d, w: w.normK.p, rows: B * Li, heads: H, D: D)
        rmsNormHeadsForward(qkvTxt.p, ld: 3 * d, w: w.normAddedQ.p, rows: B * Lt, heads: H, D: D)
        rmsNormHeadsForward(qkvTxt.p + d, ld: 3 * d, w: w.normAddedK.p, rows: B * Lt, heads: H, D: D)
        let qkv = Buffer<T>(uninitialized: B * S * 3 * d)
        joinStreams(qkv.p, ldj: 3 * d, txt: qkvTxt.p, img: qkvImg.p, B: B, Lt: Lt, Li: Li, C: 3 * d)
        ropeForward(qkv.p, ld: 3 * d, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        ropeForward(qkv.p + d, ld: 3 * d, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        let o = Buffer<T>(uninitialized: B * S * d)
        attentionForward(o.p, ldo: d, q: qkv.p, k: qkv.p + d, v: qkv.p + 2 * d, ld: 3 * d, B: B, S: S, heads: H, D: D)
        if let hm = masks[.doubleAttn, i] { scaleHeads(o.p, ld: d, rows: B * S, heads: H, D: D, by: hm.p) }
        let oTxt = Buffer<T>(uninitialized: B * Lt * d), oImg = Buffer<T>(uninitialized: B * Li * d)
        splitStreams(o.p, ldj: d, txt: oTxt.p, img: oImg.p, B: B, Lt: Lt, Li: Li, C: d)

        let aImg = Buffer<T>(uninitialized: B * Li * d), aTxt = Buffer<T>(uninitialized: B * Lt * d)
        w.toOut.forward(aImg.p, oImg.p, rows: B * Li)
        w.toAddOut.forward(aTxt.p, oTxt.p, rows: B * Lt)
        gatedResidualForward(x.p, aImg.p, gate: mod.p + 2 * d, modStride: 6 * d, rows: B * Li, tokensPerSample: Li, C: d)
        gatedResidualForward(c.p, aTxt.p, gate: modc.p + 2 * d, modStride: 6 * d, rows: B * Lt, tokensPerSample: Lt, C: d)

        // Feed-forward of each stream, on the residual updated by attention.
        func feedForward(_ s: Buffer<T>, rows: Int, L: Int, mod: Buffer<T>, ff0: LinearWeights<T>, ff2: LinearWeights<T>, mask: Buffer<T>?) {
            let sn = Buffer<T>(uninitialized: rows * d)
            adaNormForward(sn.p, s.p, shift: mod.p + 3 * d, scale: mod.p + 4 * d, modStride: 6 * d, rows: rows, tokensPerSample: L, C: d)
            let hid = Buffer<T>(uninitialized: rows * m)
            ff0.forward(hid.p, sn.p, rows: rows)
            geluForward(hid.p, rows: rows, cols: m, ld: m)
            if let mask { scaleColumns(hid.p, ld: m, rows: rows, cols: m, by: mask.p) }
            let f = Buffer<T>(uninitialized: rows * d)
            ff2.forward(f.p, hid.p, rows: rows)
            gatedResidualForward(s.p, f.p, gate: mod.p + 5 * d, modStride: 6 * d, rows: rows, tokensPerSample: L, C: d)
        }
        feedForward(x, rows: B * Li, L: Li, mod: mod, ff0: w.ff0, ff2: w.ff2, mask: masks[.ff, i])
        feedForward(c, rows: B * Lt, L: Lt, mod: modc, ff0: w.ffContext0, ff2: w.ffContext2, mask: masks[.ffContext, i])
    }

    /// One single-stream block on the joint sequence h [B, S, dim], in place.
    func singleBlock(_ i: Int, h: Buffer<T>, siluTemb: Buffer<T>, cond: FluxConditioning<T>, masks: MaskSet<T>) throws {
        let w = try weights.singleBlock(i)
        let cfg = config, B = cond.batch, S = cond.textTokens + cond.imageTokens
        let d = cfg.dim, H = cfg.numAttentionHeads, D = cfg.attentionHeadDim, m = cfg.mlpDim
        let mod = modulation(w.norm, siluTemb, B: B, mask: masks[.singleNorm, i])
        let hn = Buffer<T>(uninitialized: B * S * d)
        adaNormForward(hn.p, h.p, shift: mod.p, scale: mod.p + d, modStride: 3 * d, rows: B * S, tokensPerSample: S, C: d)
        // linear1 = [q | k | v | mlp] in one GEMM.
        let ld1 = 3 * d + m
        let f = Buffer<T>(uninitialized: B * S * ld1)
        w.linear1.forward(f.p, hn.p, rows: B * S)
        rmsNormHeadsForward(f.p, ld: ld1, w: w.normQ.p, rows: B * S, heads: H, D: D)
        rmsNormHeadsForward(f.p + d, ld: ld1, w: w.normK.p, rows: B * S, heads: H, D: D)
        ropeForward(f.p, ld: ld1, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        ropeForward(f.p + d, ld: ld1, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        // proj_out input is [attention (dim) | GELU(mlp) (4·dim)] per row.
        let ld2 = d + m
        let a = Buffer<T>(uninitialized: B * S * ld2)
        attentionForward(a.p, ldo: ld2, q: f.p, k: f.p + d, v: f.p + 2 * d, ld: ld1, B: B, S: S, heads: H, D: D)
        if let hm = masks[.singleAttn, i] { scaleHeads(a.p, ld: ld2, rows: B * S, heads: H, D: D, by: hm.p) }
        for r in 0..<(B * S) { (a.p + r * ld2 + d).update(from: f.p + r * ld1 + 3 * d, count: m) }
        geluForward(a.p + d, rows: B * S, cols: m, ld: ld2)
        if let mask = masks[.projMLP, i] { scaleColumns(a.p + d, ld: ld2, rows: B * S, cols: m, by: mask.p) }
        let out = Buffer<T>(uninitialized: B * S * d)
        w.projOut.forward(out.p, a.p, rows: B * S)
        gatedResidualForward(h.p, out.p, gate: mod.p + 2 * d, modStride: 3 * d, rows: B * S, tokensPerSample: S, C: d)
    }
}
