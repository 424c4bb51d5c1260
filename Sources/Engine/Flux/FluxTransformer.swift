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
        try forward(hidden: hidden, sigma: sigma, cond: cond, masks: masks, tape: nil)
    }

    func checkInputs(sigma: [Double], cond: FluxConditioning<T>, masks: MaskSet<T>) throws {
        let cfg = config
        guard sigma.count == cond.batch else {
            throw FluxError.badInput("timestep must have one value per sample (\(cond.batch)), got \(sigma.count)")
        }
        for s in sigma where !s.isFinite { throw FluxError.badInput("timestep is not finite") }
        for (site, m) in masks.values {
            try site.validate(for: cfg)
            guard m.count == site.width(cfg) else {
                throw FluxError.badInput("mask '\(site)' has \(m.count) values, expected \(site.width(cfg))")
            }
        }
    }

    /// The forward pass; when `tape` is given it records what the backward pass needs.
    func forward(
        hidden: UnsafePointer<T>, sigma: [Double], cond: FluxConditioning<T>, masks: MaskSet<T>, tape: FluxTape<T>?
    ) throws -> Buffer<T> {
        try checkInputs(sigma: sigma, cond: cond, masks: masks)
        let cfg = config
        let B = cond.batch, Lt = cond.textTokens, Li = cond.imageTokens
        let d = cfg.dim
        let top = weights.top
        // Embed the image tokens, the text tokens and the conditioning vector.
        let x = Buffer<T>(uninitialized: B * Li * d)
        top.xEmbedder.forward(x.p, hidden, rows: B * Li)
        let c = Buffer<T>(uninitialized: B * Lt * d)
        top.contextEmbedder.forward(c.p, cond.encoderHiddenStates.p, rows: B * Lt)
        let temb = timeTextEmbedding(sigma: sigma, cond: cond, tape: tape)
        let siluTemb = Buffer<T>(uninitialized: B * d)
        siluForward(siluTemb.p, temb.p, count: B * d)
        tape?.temb = temb
        tape?.siluTemb = siluTemb

        for i in 0..<cfg.numLayers {
            let rec = tape.map { _ in DoubleBlockTape<T>() }
            try doubleBlock(i, x: x, c: c, siluTemb: siluTemb, cond: cond, masks: masks, tape: rec)
            if let rec { tape?.doubles.append(rec) }
        }
        let S = Lt + Li
        let h = Buffer<T>(uninitialized: B * S * d)
        joinStreams(h.p, ldj: d, txt: c.p, img: x.p, B: B, Lt: Lt, Li: Li, C: d)
        for i in 0..<cfg.numSingleLayers {
            let rec = tape.map { _ in SingleBlockTape<T>() }
            try singleBlock(i, h: h, siluTemb: siluTemb, cond: cond, masks: masks, tape: rec)
            if let rec { tape?.singles.append(rec) }
        }
        splitStreams(h.p, ldj: d, txt: nil, img: x.p, B: B, Lt: Lt, Li: Li, C: d)

        // Output head: AdaLayerNormContinuous (scale first, then shift) and proj_out.
        let e = Buffer<T>(uninitialized: B * 2 * d)
        top.normOut.forward(e.p, siluTemb.p, rows: B)
        let xn = Buffer<T>(uninitialized: B * Li * d)
        let mean = tape.map { _ in Buffer<T>(uninitialized: B * Li) }, rstd = tape.map { _ in Buffer<T>(uninitialized: B * Li) }
        adaNormForward(xn.p, x.p, shift: e.p + d, scale: e.p, modStride: 2 * d, rows: B * Li, tokensPerSample: Li, C: d,
                       mean: mean?.p, rstd: rstd?.p)
        let out = Buffer<T>(uninitialized: B * Li * cfg.outputChannels)
        top.projOut.forward(out.p, xn.p, rows: B * Li)
        if let tape {
            tape.finalX = x; tape.finalMod = e; tape.finalXn = xn; tape.finalMean = mean; tape.finalRstd = rstd
        }
        return out
    }

    /// temb = timestep_embedder(Proj(1000σ)) [+ guidance_embedder(Proj(1000g))] + text_embedder(pooled).
    func timeTextEmbedding(sigma: [Double], cond: FluxConditioning<T>, tape: FluxTape<T>? = nil) -> Buffer<T> {
        let top = weights.top, d = config.dim, B = cond.batch
        let P = FluxConfig.timeProjDim
        let temb = Buffer<T>.zeros(B * d)
        /// linear_2(SiLU(linear_1(input))), added to temb; returns (input of linear_1, linear_1 output) for the tape.
        func mlp(_ l1: LinearWeights<T>, _ l2: LinearWeights<T>, _ input: UnsafePointer<T>) -> Buffer<T> {
            let pre = Buffer<T>(uninitialized: B * d)
            l1.forward(pre.p, input, rows: B)
            let act = Buffer<T>(uninitialized: B * d)
            siluForward(act.p, pre.p, count: B * d)
            let y = Buffer<T>(uninitialized: B * d)
            l2.forward(y.p, act.p, rows: B)
            for i in 0..<(B * d) { temb[i] += y[i] }
            return pre
        }
        let proj = Buffer<T>(uninitialized: B * P)
        for b in 0..<B { timestepProjection(sigma[b] * 1000, into: proj.p + b * P) }
        let timePre = mlp(top.timeLinear1, top.timeLinear2, proj.p)
        var guidancePre: Buffer<T>? = nil, guidanceProj: Buffer<T>? = nil
        if let g = cond.guidance, let g1 = top.guidanceLinear1, let g2 = top.guidanceLinear2 {
            let gp = Buffer<T>(uninitialized: B * P)
            for b in 0..<B { timestepProjection(g[b] * 1000, into: gp.p + b * P) }
            guidancePre = mlp(g1, g2, gp.p)
            guidanceProj = gp
        }
        let textPre = mlp(top.textLinear1, top.textLinear2, cond.pooledProjections.p)
        if let tape {
            tape.timeProj = proj; tape.timePre = timePre
            tape.guidanceProj = guidanceProj; tape.guidancePre = guidancePre
            tape.textPre = textPre
        }
        return temb
    }

    /// Modulation vectors: linear(SiLU(temb)), optionally masked per output. Returns (masked, unmasked).
    private func modulation(_ lin: LinearWeights<T>, _ siluTemb: Buffer<T>, B: Int, mask: Buffer<T>?) -> (Buffer<T>, Buffer<T>) {
        let raw = Buffer<T>(uninitialized: B * lin.outDim)
        lin.forward(raw.p, siluTemb.p, rows: B)
        guard let mask else { return (raw, raw) }
        let m = raw.copy()
        scaleColumns(m.p, ld: lin.outDim, rows: B, cols: lin.outDim, by: mask.p)
        return (m, raw)
    }

    /// One double-stream block, updating x (image) and c (text) in place.
    func doubleBlock(
        _ i: Int, x: Buffer<T>, c: Buffer<T>, siluTemb: Buffer<T>, cond: FluxConditioning<T>, masks: MaskSet<T>,
        tape: DoubleBlockTape<T>? = nil
    ) throws {
        let w = try weights.doubleBlock(i)
        let cfg = config, B = cond.batch, Lt = cond.textTokens, Li = cond.imageTokens, S = Lt + Li
        let d = cfg.dim, H = cfg.numAttentionHeads, D = cfg.attentionHeadDim
        let rec = tape != nil
        func stats(_ n: Int) -> Buffer<T>? { rec ? Buffer<T>(uninitialized: n) : nil }
        if let tape { tape.x = x.copy(); tape.c = c.copy() }
        let (mod, modRaw) = modulation(w.norm1, siluTemb, B: B, mask: masks[.norm1, i])
        let (modc, modcRaw) = modulation(w.norm1Context, siluTemb, B: B, mask: masks[.norm1Context, i])

        // Attention over the joint [text; image] sequence.
        let xn = Buffer<T>(uninitialized: B * Li * d), cn = Buffer<T>(uninitialized: B * Lt * d)
        let meanX = stats(B * Li), rstdX = stats(B * Li), meanC = stats(B * Lt), rstdC = stats(B * Lt)
        adaNormForward(xn.p, x.p, shift: mod.p, scale: mod.p + d, modStride: 6 * d, rows: B * Li, tokensPerSample: Li, C: d,
                       mean: meanX?.p, rstd: rstdX?.p)
        adaNormForward(cn.p, c.p, shift: modc.p, scale: modc.p + d, modStride: 6 * d, rows: B * Lt, tokensPerSample: Lt, C: d,
                       mean: meanC?.p, rstd: rstdC?.p)
        let qkvImg = Buffer<T>(uninitialized: B * Li * 3 * d), qkvTxt = Buffer<T>(uninitialized: B * Lt * 3 * d)
        w.qkv.forward(qkvImg.p, xn.p, rows: B * Li)
        w.addQKV.forward(qkvTxt.p, cn.p, rows: B * Lt)
        let textMasks = MaskSite.Kind.textQKV.compactMap { k in masks[k, i].map { (k.textQKVSlot!, $0) } }
        let txtRaw = rec && !textMasks.isEmpty ? qkvTxt.copy() : nil
        for (slot, m) in textMasks { scaleColumns(qkvTxt.p + slot * d, ld: 3 * d, rows: B * Lt, cols: d, by: m.p) }
        let preImg = rec ? qkvImg.copy() : nil, preTxt = rec ? qkvTxt.copy() : nil
        let rQI = stats(B * Li * H), rKI = stats(B * Li * H), rQT = stats(B * Lt * H), rKT = stats(B * Lt * H)
        rmsNormHeadsForward(qkvImg.p, ld: 3 * d, w: w.normQ.p, rows: B * Li, heads: H, D: D, rrms: rQI?.p)
        rmsNormHeadsForward(qkvImg.p + d, ld: 3 * d, w: w.normK.p, rows: B * Li, heads: H, D: D, rrms: rKI?.p)
        rmsNormHeadsForward(qkvTxt.p, ld: 3 * d, w: w.normAddedQ.p, rows: B * Lt, heads: H, D: D, rrms: rQT?.p)
        rmsNormHeadsForward(qkvTxt.p + d, ld: 3 * d, w: w.normAddedK.p, rows: B * Lt, heads: H, D: D, rrms: rKT?.p)
        let qkv = Buffer<T>(uninitialized: B * S * 3 * d)
        joinStreams(qkv.p, ldj: 3 * d, txt: qkvTxt.p, img: qkvImg.p, B: B, Lt: Lt, Li: Li, C: 3 * d)
        ropeForward(qkv.p, ld: 3 * d, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        ropeForward(qkv.p + d, ld: 3 * d, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        let o = Buffer<T>(uninitialized: B * S * d)
        let probs = stats(B * H * S * S)
        attentionForward(o.p, ldo: d, q: qkv.p, k: qkv.p + d, v: qkv.p + 2 * d, ld: 3 * d, B: B, S: S, heads: H, D: D, probs: probs?.p,
                         mode: weights.matmulMode)
        var oMasked = o
        if let hm = masks[.doubleAttn, i] {
            oMasked = rec ? o.copy() : o
            scaleHeads(oMasked.p, ld: d, rows: B * S, heads: H, D: D, by: hm.p)
        }
        let oTxt = Buffer<T>(uninitialized: B * Lt * d), oImg = Buffer<T>(uninitialized: B * Li * d)
        splitStreams(oMasked.p, ldj: d, txt: oTxt.p, img: oImg.p, B: B, Lt: Lt, Li: Li, C: d)

        let aImg = Buffer<T>(uninitialized: B * Li * d), aTxt = Buffer<T>(uninitialized: B * Lt * d)
        w.toOut.forward(aImg.p, oImg.p, rows: B * Li)
        w.toAddOut.forward(aTxt.p, oTxt.p, rows: B * Lt)
        gatedResidualForward(x.p, aImg.p, gate: mod.p + 2 * d, modStride: 6 * d, rows: B * Li, tokensPerSample: Li, C: d)
        gatedResidualForward(c.p, aTxt.p, gate: modc.p + 2 * d, modStride: 6 * d, rows: B * Lt, tokensPerSample: Lt, C: d)
        if let tape {
            tape.mod = mod; tape.modRaw = modRaw; tape.modc = modc; tape.modcRaw = modcRaw
            tape.xn = xn; tape.cn = cn
            tape.meanX = meanX; tape.rstdX = rstdX; tape.meanC = meanC; tape.rstdC = rstdC
            tape.preImg = preImg; tape.preTxt = preTxt; tape.txtRaw = txtRaw
            tape.rQI = rQI; tape.rKI = rKI; tape.rQT = rQT; tape.rKT = rKT
            tape.qkv = qkv; tape.probs = probs; tape.o = o; tape.oImg = oImg; tape.oTxt = oTxt
            tape.aImg = aImg; tape.aTxt = aTxt
            tape.x1 = x.copy(); tape.c1 = c.copy()
        }
        // (Not `tape?.ffImg = feedForward(…)`: optional chaining would skip the call without a tape.)
        let ffImg = feedForward(x, rows: B * Li, L: Li, mod: mod, ff0: w.ff0, ff2: w.ff2, mask: masks[.ff, i], record: rec)
        let ffTxt = feedForward(c, rows: B * Lt, L: Lt, mod: modc, ff0: w.ffContext0, ff2: w.ffContext2,
                                mask: masks[.ffContext, i], record: rec)
        tape?.ffImg = ffImg
        tape?.ffTxt = ffTxt
    }

    /// A double block's feed-forward on the residual updated by attention: s += gate_mlp·FF(adaNorm(s)).
    private func feedForward(
        _ s: Buffer<T>, rows: Int, L: Int, mod: Buffer<T>, ff0: LinearWeights<T>, ff2: LinearWeights<T>,
        mask: Buffer<T>?, record: Bool
    ) -> FeedForwardTape<T>? {
        let d = config.dim, m = config.mlpDim
        let sn = Buffer<T>(uninitialized: rows * d)
        let mean = record ? Buffer<T>(uninitialized: rows) : nil, rstd = record ? Buffer<T>(uninitialized: rows) : nil
        adaNormForward(sn.p, s.p, shift: mod.p + 3 * d, scale: mod.p + 4 * d, modStride: 6 * d, rows: rows, tokensPerSample: L, C: d,
                       mean: mean?.p, rstd: rstd?.p)
        let u = Buffer<T>(uninitialized: rows * m)
        ff0.forward(u.p, sn.p, rows: rows)
        let g = record ? Buffer<T>(uninitialized: rows * m) : u
        geluForward(g.p, ldo: m, u.p, ldx: m, rows: rows, cols: m)
        var gm = g
        if let mask {
            gm = record ? g.copy() : g
            scaleColumns(gm.p, ld: m, rows: rows, cols: m, by: mask.p)
        }
        let f = Buffer<T>(uninitialized: rows * d)
        ff2.forward(f.p, gm.p, rows: rows)
        gatedResidualForward(s.p, f.p, gate: mod.p + 5 * d, modStride: 6 * d, rows: rows, tokensPerSample: L, C: d)
        guard record else { return nil }
        return FeedForwardTape(sn: sn, mean: mean!, rstd: rstd!, u: u, g: g, gm: gm, f: f)
    }

    /// One single-stream block on the joint sequence h [B, S, dim], in place.
    func singleBlock(
        _ i: Int, h: Buffer<T>, siluTemb: Buffer<T>, cond: FluxConditioning<T>, masks: MaskSet<T>,
        tape: SingleBlockTape<T>? = nil
    ) throws {
        let w = try weights.singleBlock(i)
        let cfg = config, B = cond.batch, S = cond.textTokens + cond.imageTokens
        let d = cfg.dim, H = cfg.numAttentionHeads, D = cfg.attentionHeadDim, m = cfg.mlpDim
        let rec = tape != nil
        func stats(_ n: Int) -> Buffer<T>? { rec ? Buffer<T>(uninitialized: n) : nil }
        if let tape { tape.h = h.copy() }
        let (mod, modRaw) = modulation(w.norm, siluTemb, B: B, mask: masks[.singleNorm, i])
        let hn = Buffer<T>(uninitialized: B * S * d)
        let mean = stats(B * S), rstd = stats(B * S)
        adaNormForward(hn.p, h.p, shift: mod.p, scale: mod.p + d, modStride: 3 * d, rows: B * S, tokensPerSample: S, C: d,
                       mean: mean?.p, rstd: rstd?.p)
        // linear1 = [q | k | v | mlp] in one GEMM.
        let ld1 = 3 * d + m
        let f = Buffer<T>(uninitialized: B * S * ld1)
        w.linear1.forward(f.p, hn.p, rows: B * S)
        let fPre = rec ? f.copy() : nil
        let rQ = stats(B * S * H), rK = stats(B * S * H)
        rmsNormHeadsForward(f.p, ld: ld1, w: w.normQ.p, rows: B * S, heads: H, D: D, rrms: rQ?.p)
        rmsNormHeadsForward(f.p + d, ld: ld1, w: w.normK.p, rows: B * S, heads: H, D: D, rrms: rK?.p)
        ropeForward(f.p, ld: ld1, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        ropeForward(f.p + d, ld: ld1, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        // proj_out input is [attention (dim) | GELU(mlp) (4·dim)] per row.
        let ld2 = d + m
        let a = Buffer<T>(uninitialized: B * S * ld2)
        let probs = stats(B * H * S * S)
        attentionForward(a.p, ldo: ld2, q: f.p, k: f.p + d, v: f.p + 2 * d, ld: ld1, B: B, S: S, heads: H, D: D, probs: probs?.p,
                         mode: weights.matmulMode)
        geluForward(a.p + d, ldo: ld2, f.p + 3 * d, ldx: ld1, rows: B * S, cols: m)
        let aPre = rec && (masks[.singleAttn, i] != nil || masks[.projMLP, i] != nil) ? a.copy() : a
        if let hm = masks[.singleAttn, i] { scaleHeads(a.p, ld: ld2, rows: B * S, heads: H, D: D, by: hm.p) }
        if let mask = masks[.projMLP, i] { scaleColumns(a.p + d, ld: ld2, rows: B * S, cols: m, by: mask.p) }
        let out = Buffer<T>(uninitialized: B * S * d)
        w.projOut.forward(out.p, a.p, rows: B * S)
        gatedResidualForward(h.p, out.p, gate: mod.p + 2 * d, modStride: 3 * d, rows: B * S, tokensPerSample: S, C: d)
        if let tape {
            tape.mod = mod; tape.modRaw = modRaw; tape.hn = hn; tape.mean = mean; tape.rstd = rstd
            tape.f = f; tape.fPre = fPre; tape.rQ = rQ; tape.rK = rK; tape.probs = probs
            tape.a = a; tape.aPre = aPre; tape.out = out
        }
    }
}
