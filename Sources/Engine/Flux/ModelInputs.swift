import BLAS
import SafeTensors

/// The inputs of one transformer call, read from a safetensors file whose tensors are named like diffusers'
/// forward arguments: hidden_states [B,L,C], encoder_hidden_states [B,T,D], pooled_projections [B,P],
/// timestep [B] (σ), img_ids [L,3], txt_ids [T,3] and guidance [B] for models with guidance embeddings.
public struct ModelInputs<T: Scalar>: @unchecked Sendable {
    public let hidden: Buffer<T>
    public let cond: FluxConditioning<T>
    public let timestep: [Double]?
    public let file: SafeTensorsFile

    public var batch: Int { cond.batch }
    public var imageTokens: Int { cond.imageTokens }

    public init(path: String, config: FluxConfig, requireTimestep: Bool) throws {
        let f: SafeTensorsFile
        do { f = try SafeTensorsFile(path: path) } catch let e as SafeTensorsError {
            throw FluxError.io("cannot read inputs: \(e)")
        }
        file = f
        func shape(_ n: String) throws -> [Int] {
            guard f.contains(n) else { throw FluxError.badInput("\(path): required tensor '\(n)' is missing") }
            return try f.info(n).shape
        }
        func values(_ n: String) throws -> [Double] {
            let v = try f.doubles(n)
            for x in v where !x.isFinite { throw FluxError.badInput("\(path): tensor '\(n)' contains NaN or ±inf") }
            return v
        }
        func expect(_ n: String, _ s: [Int], _ ok: Bool, _ what: String) throws {
            if !ok { throw FluxError.badInput("\(path): tensor '\(n)' has shape \(s), expected \(what)") }
        }
        let hs = try shape("hidden_states")
        try expect("hidden_states", hs, hs.count == 3 && hs[2] == config.inChannels && hs[0] > 0 && hs[1] > 0,
                   "[B, L, \(config.inChannels)] (in_channels of the model)")
        let B = hs[0], L = hs[1]
        let es = try shape("encoder_hidden_states")
        try expect("encoder_hidden_states", es, es.count == 3 && es[0] == B && es[2] == config.jointAttentionDim,
                   "[\(B), T, \(config.jointAttentionDim)]")
        let T_ = es[1]
        let ps = try shape("pooled_projections")
        try expect("pooled_projections", ps, ps == [B, config.pooledProjectionDim], "[\(B), \(config.pooledProjectionDim)]")
        let axes = config.axesDimsRope.count
        var imgIds = try values("img_ids")
        let ish = try shape("img_ids")
        // diffusers still accepts (deprecated) batched ids [B, L, 3] and uses the first.
        try expect("img_ids", ish, ish == [L, axes] || (ish.count == 3 && ish[1] == L && ish[2] == axes), "[\(L), \(axes)]")
        if ish.count == 3 { imgIds = Array(imgIds[0..<(L * axes)]) }
        var txtIds = try values("txt_ids")
        let tsh = try shape("txt_ids")
        try expect("txt_ids", tsh, tsh == [T_, axes] || (tsh.count == 3 && tsh[1] == T_ && tsh[2] == axes), "[\(T_), \(axes)]")
        if tsh.count == 3 { txtIds = Array(txtIds[0..<(T_ * axes)]) }
        var guidance: [Double]? = nil
        if config.guidanceEmbeds {
            try expect("guidance", try shape("guidance"), try shape("guidance") == [B], "[\(B)] (this model has guidance embeddings)")
            guidance = try values("guidance")
        } else if f.contains("guidance") {
            throw FluxError.badInput("\(path): has 'guidance' but the model has no guidance embeddings (guidance_embeds = false)")
        }
        if f.contains("timestep") {
            let s = try shape("timestep")
            try expect("timestep", s, s == [B] || (B == 1 && s == []), "[\(B)] (σ in [0, 1])")
            timestep = try values("timestep")
        } else if requireTimestep {
            throw FluxError.badInput("\(path): required tensor 'timestep' is missing")
        } else {
            timestep = nil
        }
        hidden = Buffer(try values("hidden_states").map { T($0) })
        cond = try FluxConditioning(
            config: config, batch: B,
            encoderHiddenStates: Buffer(try values("encoder_hidden_states").map { T($0) }),
            pooledProjections: Buffer(try values("pooled_projections").map { T($0) }),
            guidance: guidance, txtIds: txtIds, imgIds: imgIds)
    }
}
