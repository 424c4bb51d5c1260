import BLAS

extension FluxTransformer {
    /// Vector–Jacobian product of one transformer call: runs the forward pass with a tape, then
    /// accumulates ⟨dOut, ∂v/∂·⟩ into `grads` — inputs, mask values and (if `grads.weights`) weights.
    /// Returns the forward output v.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func vjp(
        hidden: UnsafePointer<T>, sigma: [Double], cond: FluxConditioning<T>, masks: MaskSet<T> = MaskSet(),
        dOut: UnsafePointer<T>, grads: FluxGradients<T>
    ) throws -> Buffer<T> {
        let (tape, out) = try tapedForward(hidden: hidden, sigma: sigma, cond: cond, masks: masks)
        try backward(tape: tape, cond: cond, masks: masks, dOut: dOut, grads: grads)
        return out
    }

    /// The forward pass recording everything the backward pass needs (including the latent input).
    private func tapedForward(
        hidden: UnsafePointer<T>, sigma: [Double], cond: FluxConditioning<T>, masks: MaskSet<T>
    ) throws -> (FluxTape<T>, Buffer<T>) {
        let tape = FluxTape<T>()
        tape.hidden = Buffer(Array(UnsafeBufferPointer(start: hidden, count: cond.batch * cond.imageTokens * config.inChannels)))
        return (tape, try forward(hidden: hidden, sigma: sigma, cond: cond, masks: masks, tape: tape))
    }

    /// One training-style evaluation: the taped forward pass, the objective on its output v (value and dv),
    /// then the backward pass accumulating into `grads`. Returns the objective's value.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func valueAndGradient(
        hidden: UnsafePointer<T>, sigma: [Double], cond: FluxConditioning<T>, masks: MaskSet<T> = MaskSet(),
        grads: FluxGradients<T>, objective: (Buffer<T>) throws -> (loss: Double, dOut: Buffer<T>)
    ) throws -> Double {
        let (tape, out) = try tapedForward(hidden: hidden, sigma: sigma, cond: cond, masks: masks)
        let (loss, dOut) = try objective(out)
        guard dOut.count == out.count else { throw FluxError.badShape("objective gradient has \(dOut.count) values, output \(out.count)") }
        try backward(tape: tape, cond: cond, masks: masks, dOut: dOut.p, grads: grads)
        return loss
    }

    func backward(tape: FluxTape<T>, cond: FluxConditioning<T>, masks: MaskSet<T>, dOut: UnsafePointer<T>, grads: FluxGradients<T>) throws {
        try grads.check(config: config, cond: cond)
        let cfg = config, top = weights.top, pg = grads.weights?.top
        let B = cond.batch, Lt = cond.textTokens, Li = cond.imageTokens, S = Lt + Li, d = cfg.dim
        // Output head.
        let dxn = Buffer<T>.zeros(B * Li * d)
        linearBackward(dx: dxn.p, dW: pg?.projOut.w.p, db: pg?.projOut.b.p, dy: dOut, x: tape.finalXn.p, w: top.projOut,
                       rows: B * Li, inDim: d, outDim: cfg.outputChannels)
        let de = Buffer<T>.zeros(B * 2 * d)
        let dx = Buffer<T>.zeros(B * Li * d)
        adaNormBackward(dx: dx.p, dshift: de.p + d, dscale: de.p, dmodStride: 2 * d, dout: dxn.p, x: tape.finalX.p,
                        mean: tape.finalMean!.p, rstd: tape.finalRstd!.p, scale: tape.finalMod.p, modStride: 2 * d,
                        rows: B * Li, tokensPerSample: Li, C: d)
        let dSiluTemb = Buffer<T>.zeros(B * d)
        linearBackward(dx: dSiluTemb.p, dW: pg?.normOut.w.p, db: pg?.normOut.b.p, dy: de.p, x: tape.siluTemb.p, w: top.normOut,
                       rows: B, inDim: d, outDim: 2 * d)

        // Single blocks, last first, on the joint sequence (text rows get no gradient from the head).
        let dh = Buffer<T>.zeros(B * S * d)
        let zeroTxt = Buffer<T>.zeros(B * Lt * d)
        joinStreams(dh.p, ldj: d, txt: zeroTxt.p, img: dx.p, B: B, Lt: Lt, Li: Li, C: d)
        for i in stride(from: cfg.numSingleLayers - 1, through: 0, by: -1) {
            try singleBlockBackward(i, tape: tape.singles[i], dh: dh, dSiluTemb: dSiluTemb, siluTemb: tape.siluTemb,
                                    cond: cond, masks: masks, grads: grads)
        }
        let dc = Buffer<T>(uninitialized: B * Lt * d)
        splitStreams(dh.p, ldj: d, txt: dc.p, img: dx.p, B: B, Lt: Lt, Li: Li, C: d)
        for i in stride(from: cfg.numLayers - 1, through: 0, by: -1) {
            try doubleBlockBackward(i, tape: tape.doubles[i], dx: dx, dc: dc, dSiluTemb: dSiluTemb, siluTemb: tape.siluTemb,
                                    cond: cond, masks: masks, grads: grads)
        }

        // Embedders.
        linearBackward(dx: grads.hidden.p, dW: pg?.xEmbedder.w.p, db: pg?.xEmbedder.b.p, dy: dx.p, x: tape.hidden.p,
                       w: top.xEmbedder, rows: B * Li, inDim: cfg.inChannels, outDim: d)
        linearBackward(dx: grads.encoderHiddenStates.p, dW: pg?.contextEmbedder.w.p, db: pg?.contextEmbedder.b.p, dy: dc.p,
                       x: cond.encoderHiddenStates.p, w: top.contextEmbedder, rows: B * Lt, inDim: cfg.jointAttentionDim, outDim: d)
        let dTemb = Buffer<T>.zeros(B * d)
        siluBackward(dx: dTemb.p, dy: dSiluTemb.p, x: tape.temb.p, count: B * d)
        /// Backward of linear_2(SiLU(linear_1(input))) given d(output) = dTemb; dInput accumulates when given.
        func mlpBackward(_ l1: LinearWeights<T>, _ l2: LinearWeights<T>, g1: LinearWeights<T>?, g2: LinearWeights<T>?,
                         input: UnsafePointer<T>, pre: Buffer<T>, dInput: UnsafeMutablePointer<T>?) {
            let act = Buffer<T>(uninitialized: B * d)
            siluForward(act.p, pre.p, count: B * d)
            let dAct = Buffer<T>.zeros(B * d)
            linearBackward(dx: dAct.p, dW: g2?.w.p, db: g2?.b.p, dy: dTemb.p, x: act.p, w: l2, rows: B, inDim: d, outDim: d)
            let dPre = Buffer<T>.zeros(B * d)
            siluBackward(dx: dPre.p, dy: dAct.p, x: pre.p, count: B * d)
            linearBackward(dx: dInput, dW: g1?.w.p, db: g1?.b.p, dy: dPre.p, x: input, w: l1, rows: B, inDim: l1.inDim, outDim: d)
        }
        mlpBackward(top.textLinear1, top.textLinear2, g1: pg?.textLinear1, g2: pg?.textLinear2,
                    input: cond.pooledProjections.p, pre: tape.textPre, dInput: grads.pooledProjections.p)
        if pg != nil {
            // The time and guidance embedders have no input gradient; only their weights need one.
            mlpBackward(top.timeLinear1, top.timeLinear2, g1: pg?.timeLinear1, g2: pg?.timeLinear2,
                        input: tape.timeProj.p, pre: tape.timePre, dInput: nil)
            if let gl1 = top.guidanceLinear1, let gl2 = top.guidanceLinear2, let gp = tape.guidanceProj, let gpre = tape.guidancePre {
                mlpBackward(gl1, gl2, g1: pg?.guidanceLinear1, g2: pg?.guidanceLinear2, input: gp.p, pre: gpre, dInput: nil)
            }
        }
    }

    /// Accumulates the gradient of a masked modulation (dmod is w.r.t. the masked values) into the mask and
    /// into SiLU(temb) through the modulation Linear.
    private func modulationBackward(
        _ lin: LinearWeights<T>, grad: LinearWeights<T>?, dmod: Buffer<T>, raw: Buffer<T>, site: MaskSite, masks: MaskSet<T>,
        grads: FluxGradients<T>, siluTemb: Buffer<T>, dSiluTemb: Buffer<T>, B: Int
    ) {
        if let mask = masks[site] {
            scaleColumnsBackward(dmod.p, ld: lin.outDim, x: raw.p, ldx: lin.outDim, mask: mask.p, dmask: grads.masks[site]?.p,
                                 rows: B, cols: lin.outDim)
        }
        linearBackward(dx: dSiluTemb.p, dW: grad?.w.p, db: grad?.b.p, dy: dmod.p, x: siluTemb.p, w: lin,
                       rows: B, inDim: lin.inDim, outDim: lin.outDim)
    }

    /// A double block's feed-forward: ds is d(block output) on entry and d(x1) on exit.
    private func feedForwardBackward(
        _ ds: Buffer<T>, rows: Int, L: Int, x1: Buffer<T>, mod: Buffer<T>, dmod: Buffer<T>, ff: FeedForwardTape<T>,
        ff0: LinearWeights<T>, ff2: LinearWeights<T>, g0: LinearWeights<T>?, g2: LinearWeights<T>?,
        mask: Buffer<T>?, dmask: Buffer<T>?
    ) {
        let d = config.dim, m = config.mlpDim
        let df = Buffer<T>(uninitialized: rows * d)
        gatedResidualBackward(dgate: dmod.p + 5 * d, dmodStride: 6 * d, df: df.p, dh: ds.p, f: ff.f.p, gate: mod.p + 5 * d,
                              modStride: 6 * d, rows: rows, tokensPerSample: L, C: d)
        let dg = Buffer<T>.zeros(rows * m)
        linearBackward(dx: dg.p, dW: g2?.w.p, db: g2?.b.p, dy: df.p, x: ff.gm.p, w: ff2, rows: rows, inDim: m, outDim: d)
        if let mask { scaleColumnsBackward(dg.p, ld: m, x: ff.g.p, ldx: m, mask: mask.p, dmask: dmask?.p, rows: rows, cols: m) }
        geluBackward(dg.p, ld: m, pre: ff.u.p, ldp: m, rows: rows, cols: m)
        let dsn = Buffer<T>.zeros(rows * d)
        linearBackward(dx: dsn.p, dW: g0?.w.p, db: g0?.b.p, dy: dg.p, x: ff.sn.p, w: ff0, rows: rows, inDim: d, outDim: m)
        adaNormBackward(dx: ds.p, dshift: dmod.p + 3 * d, dscale: dmod.p + 4 * d, dmodStride: 6 * d, dout: dsn.p, x: x1.p,
                        mean: ff.mean.p, rstd: ff.rstd.p, scale: mod.p + 4 * d, modStride: 6 * d, rows: rows, tokensPerSample: L, C: d)
    }

    /// dx, dc: gradients w.r.t. the block's outputs on entry, w.r.t. its inputs on exit.
    func doubleBlockBackward(
        _ i: Int, tape t: DoubleBlockTape<T>, dx: Buffer<T>, dc: Buffer<T>, dSiluTemb: Buffer<T>, siluTemb: Buffer<T>,
        cond: FluxConditioning<T>, masks: MaskSet<T>, grads: FluxGradients<T>
    ) throws {
        let w = try weights.doubleBlock(i)
        let pg = try grads.weights?.doubleBlock(i)
        let cfg = config, B = cond.batch, Lt = cond.textTokens, Li = cond.imageTokens, S = Lt + Li
        let d = cfg.dim, H = cfg.numAttentionHeads, D = cfg.attentionHeadDim
        let dmod = Buffer<T>.zeros(B * 6 * d), dmodc = Buffer<T>.zeros(B * 6 * d)
        func site(_ k: MaskSite.Kind) -> MaskSite { MaskSite(k, block: i) }

        feedForwardBackward(dx, rows: B * Li, L: Li, x1: t.x1, mod: t.mod, dmod: dmod, ff: t.ffImg!, ff0: w.ff0, ff2: w.ff2,
                            g0: pg?.ff0, g2: pg?.ff2, mask: masks[site(.ff)], dmask: grads.masks[site(.ff)])
        feedForwardBackward(dc, rows: B * Lt, L: Lt, x1: t.c1, mod: t.modc, dmod: dmodc, ff: t.ffTxt!, ff0: w.ffContext0,
                            ff2: w.ffContext2, g0: pg?.ffContext0, g2: pg?.ffContext2,
                            mask: masks[site(.ffContext)], dmask: grads.masks[site(.ffContext)])

        // Attention residuals and output projections.
        let daImg = Buffer<T>(uninitialized: B * Li * d), daTxt = Buffer<T>(uninitialized: B * Lt * d)
        gatedResidualBackward(dgate: dmod.p + 2 * d, dmodStride: 6 * d, df: daImg.p, dh: dx.p, f: t.aImg.p, gate: t.mod.p + 2 * d,
                              modStride: 6 * d, rows: B * Li, tokensPerSample: Li, C: d)
        gatedResidualBackward(dgate: dmodc.p + 2 * d, dmodStride: 6 * d, df: daTxt.p, dh: dc.p, f: t.aTxt.p, gate: t.modc.p + 2 * d,
                              modStride: 6 * d, rows: B * Lt, tokensPerSample: Lt, C: d)
        let doImg = Buffer<T>.zeros(B * Li * d), doTxt = Buffer<T>.zeros(B * Lt * d)
        linearBackward(dx: doImg.p, dW: pg?.toOut.w.p, db: pg?.toOut.b.p, dy: daImg.p, x: t.oImg.p, w: w.toOut,
                       rows: B * Li, inDim: d, outDim: d)
        linearBackward(dx: doTxt.p, dW: pg?.toAddOut.w.p, db: pg?.toAddOut.b.p, dy: daTxt.p, x: t.oTxt.p, w: w.toAddOut,
                       rows: B * Lt, inDim: d, outDim: d)
        let dO = Buffer<T>(uninitialized: B * S * d)
        joinStreams(dO.p, ldj: d, txt: doTxt.p, img: doImg.p, B: B, Lt: Lt, Li: Li, C: d)
        if let hm = masks[site(.doubleAttn)] {
            scaleHeadsBackward(dO.p, ld: d, x: t.o.p, ldx: d, mask: hm.p, dmask: grads.masks[site(.doubleAttn)]?.p,
                               rows: B * S, heads: H, D: D)
        }

        // Joint attention, RoPE, QK RMSNorm.
        let dqkv = Buffer<T>(uninitialized: B * S * 3 * d)
        attentionBackward(dq: dqkv.p, dk: dqkv.p + d, dv: dqkv.p + 2 * d, ldg: 3 * d, dO: dO.p, ldo: d,
                          q: t.qkv.p, k: t.qkv.p + d, v: t.qkv.p + 2 * d, ld: 3 * d, probs: t.probs!.p, B: B, S: S, heads: H, D: D,
                          mode: weights.matmulMode)
        ropeBackward(dqkv.p, ld: 3 * d, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        ropeBackward(dqkv.p + d, ld: 3 * d, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: B * S, S: S, heads: H, D: D)
        let dImg = Buffer<T>(uninitialized: B * Li * 3 * d), dTxt = Buffer<T>(uninitialized: B * Lt * 3 * d)
        splitStreams(dqkv.p, ldj: 3 * d, txt: dTxt.p, img: dImg.p, B: B, Lt: Lt, Li: Li, C: 3 * d)
        rmsNormHeadsBackward(dImg.p, ld: 3 * d, x: t.preImg!.p, ldx: 3 * d, rrms: t.rQI!.p, w: w.normQ.p, dw: pg?.normQ.p,
                             rows: B * Li, heads: H, D: D)
        rmsNormHeadsBackward(dImg.p + d, ld: 3 * d, x: t.preImg!.p + d, ldx: 3 * d, rrms: t.rKI!.p, w: w.normK.p, dw: pg?.normK.p,
                             rows: B * Li, heads: H, D: D)
        rmsNormHeadsBackward(dTxt.p, ld: 3 * d, x: t.preTxt!.p, ldx: 3 * d, rrms: t.rQT!.p, w: w.normAddedQ.p, dw: pg?.normAddedQ.p,
                             rows: B * Lt, heads: H, D: D)
        rmsNormHeadsBackward(dTxt.p + d, ld: 3 * d, x: t.preTxt!.p + d, ldx: 3 * d, rrms: t.rKT!.p, w: w.normAddedK.p,
                             dw: pg?.normAddedK.p, rows: B * Lt, heads: H, D: D)
        for k in MaskSite.Kind.textQKV {
            guard let m = masks[site(k)], let raw = t.txtRaw else { continue }
            let off = k.textQKVSlot! * d
            scaleColumnsBackward(dTxt.p + off, ld: 3 * d, x: raw.p + off, ldx: 3 * d, mask: m.p, dmask: grads.masks[site(k)]?.p,
                                 rows: B * Lt, cols: d)
        }
        let dxn = Buffer<T>.zeros(B * Li * d), dcn = Buffer<T>.zeros(B * Lt * d)
        linearBackward(dx: dxn.p, dW: pg?.qkv.w.p, db: pg?.qkv.b.p, dy: dImg.p, x: t.xn.p, w: w.qkv,
                       rows: B * Li, inDim: d, outDim: 3 * d)
        linearBackward(dx: dcn.p, dW: pg?.addQKV.w.p, db: pg?.addQKV.b.p, dy: dTxt.p, x: t.cn.p, w: w.addQKV,
                       rows: B * Lt, inDim: d, outDim: 3 * d)
        adaNormBackward(dx: dx.p, dshift: dmod.p, dscale: dmod.p + d, dmodStride: 6 * d, dout: dxn.p, x: t.x.p,
                        mean: t.meanX!.p, rstd: t.rstdX!.p, scale: t.mod.p + d, modStride: 6 * d, rows: B * Li, tokensPerSample: Li, C: d)
        adaNormBackward(dx: dc.p, dshift: dmodc.p, dscale: dmodc.p + d, dmodStride: 6 * d, dout: dcn.p, x: t.c.p,
                        mean: t.meanC!.p, rstd: t.rstdC!.p, scale: t.modc.p + d, modStride: 6 * d, rows: B * Lt, tokensPerSample: Lt, C: d)

        modulationBackward(w.norm1, grad: pg?.norm1, dmod: dmod, raw: t.modRaw, site: site(.norm1), masks: masks, grads: grads,
                           siluTemb: siluTemb, dSiluTemb: dSiluTemb, B: B)
        modulationBackward(w.norm1Context, grad: pg?.norm1Context, dmod: dmodc, raw: t.modcRaw, site: site(.norm1Context),
                           masks: masks, grads: grads, siluTemb: siluTemb, dSiluTemb: dSiluTemb, B: B)
    }

    /// dh: gradient w.r.t. the block's output on entry, w.r.t. its input on exit.
    func singleBlockBackward(
        _ i: Int, tape t: SingleBlockTape<T>, dh: Buffer<T>, dSiluTemb: Buffer<T>, siluTemb: Buffer<T>,
        cond: FluxConditioning<T>, masks: MaskSet<T>, grads: FluxGradients<T>
    ) throws {
        let w = try weights.singleBlock(i)
        let pg = try grads.weights?.singleBlock(i)
        let cfg = config, B = cond.batch, S = cond.textTokens + cond.imageTokens
        let d = cfg.dim, H = cfg.numAttentionHeads, D = cfg.attentionHeadDim, m = cfg.mlpDim
        let ld1 = 3 * d + m, ld2 = d + m, rows = B * S
        func site(_ k: MaskSite.Kind) -> MaskSite { MaskSite(k, block: i) }
        let dmod = Buffer<T>.zeros(B * 3 * d)
        let dout = Buffer<T>(uninitialized: rows * d)
        gatedResidualBackward(dgate: dmod.p + 2 * d, dmodStride: 3 * d, df: dout.p, dh: dh.p, f: t.out.p, gate: t.mod.p + 2 * d,
                              modStride: 3 * d, rows: rows, tokensPerSample: S, C: d)
        let da = Buffer<T>.zeros(rows * ld2)
        linearBackward(dx: da.p, dW: pg?.projOut.w.p, db: pg?.projOut.b.p, dy: dout.p, x: t.a.p, w: w.projOut,
                       rows: rows, inDim: ld2, outDim: d)
        if let mask = masks[site(.projMLP)] {
            scaleColumnsBackward(da.p + d, ld: ld2, x: t.aPre.p + d, ldx: ld2, mask: mask.p, dmask: grads.masks[site(.projMLP)]?.p,
                                 rows: rows, cols: m)
        }
        if let hm = masks[site(.singleAttn)] {
            scaleHeadsBackward(da.p, ld: ld2, x: t.aPre.p, ldx: ld2, mask: hm.p, dmask: grads.masks[site(.singleAttn)]?.p,
                               rows: rows, heads: H, D: D)
        }
        // d linear1 output: [dq | dk | dv | d mlp pre-activation].
        let dF = Buffer<T>(uninitialized: rows * ld1)
        for r in 0..<rows { (dF.p + r * ld1 + 3 * d).update(from: da.p + r * ld2 + d, count: m) }
        geluBackward(dF.p + 3 * d, ld: ld1, pre: t.f.p + 3 * d, ldp: ld1, rows: rows, cols: m)
        attentionBackward(dq: dF.p, dk: dF.p + d, dv: dF.p + 2 * d, ldg: ld1, dO: da.p, ldo: ld2,
                          q: t.f.p, k: t.f.p + d, v: t.f.p + 2 * d, ld: ld1, probs: t.probs!.p, B: B, S: S, heads: H, D: D,
                          mode: weights.matmulMode)
        ropeBackward(dF.p, ld: ld1, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: rows, S: S, heads: H, D: D)
        ropeBackward(dF.p + d, ld: ld1, cos: cond.rope.cos.p, sin: cond.rope.sin.p, rows: rows, S: S, heads: H, D: D)
        rmsNormHeadsBackward(dF.p, ld: ld1, x: t.fPre!.p, ldx: ld1, rrms: t.rQ!.p, w: w.normQ.p, dw: pg?.normQ.p,
                             rows: rows, heads: H, D: D)
        rmsNormHeadsBackward(dF.p + d, ld: ld1, x: t.fPre!.p + d, ldx: ld1, rrms: t.rK!.p, w: w.normK.p, dw: pg?.normK.p,
                             rows: rows, heads: H, D: D)
        let dhn = Buffer<T>.zeros(rows * d)
        linearBackward(dx: dhn.p, dW: pg?.linear1.w.p, db: pg?.linear1.b.p, dy: dF.p, x: t.hn.p, w: w.linear1,
                       rows: rows, inDim: d, outDim: ld1)
        adaNormBackward(dx: dh.p, dshift: dmod.p, dscale: dmod.p + d, dmodStride: 3 * d, dout: dhn.p, x: t.h.p,
                        mean: t.mean!.p, rstd: t.rstd!.p, scale: t.mod.p + d, modStride: 3 * d, rows: rows, tokensPerSample: S, C: d)
        modulationBackward(w.norm, grad: pg?.norm, dmod: dmod, raw: t.modRaw, site: site(.singleNorm), masks: masks, grads: grads,
                           siluTemb: siluTemb, dSiluTemb: dSiluTemb, B: B)
    }
}
