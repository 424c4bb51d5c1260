import BLAS
import Foundation
import SafeTensors

extension FluxWeights {
    /// Every tensor under its diffusers name with its diffusers shape, un-fusing the q/k/v (and single-block
    /// linear1) row blocks this engine keeps fused. `diffusersTensorNames` order.
    public func diffusersTensors() throws -> [(name: String, shape: [Int], values: [T])] {
        let cfg = config, d = cfg.dim
        var out: [(String, [Int], [T])] = []
        func rows(_ b: Buffer<T>, _ r: Range<Int>, _ perRow: Int) -> [T] {
            Array(UnsafeBufferPointer(start: b.p + r.lowerBound * perRow, count: r.count * perRow))
        }
        func lin(_ name: String, _ l: LinearWeights<T>, rowRange: Range<Int>? = nil) {
            let r = rowRange ?? 0..<l.outDim
            out.append(("\(name).weight", [r.count, l.inDim], rows(l.w, r, l.inDim)))
            out.append(("\(name).bias", [r.count], rows(l.b, r, 1)))
        }
        func vec(_ name: String, _ b: Buffer<T>) { out.append((name, [b.count], b.array)) }
        let t = top
        lin("x_embedder", t.xEmbedder); lin("context_embedder", t.contextEmbedder)
        lin("time_text_embed.timestep_embedder.linear_1", t.timeLinear1)
        lin("time_text_embed.timestep_embedder.linear_2", t.timeLinear2)
        if let g1 = t.guidanceLinear1, let g2 = t.guidanceLinear2 {
            lin("time_text_embed.guidance_embedder.linear_1", g1); lin("time_text_embed.guidance_embedder.linear_2", g2)
        }
        lin("time_text_embed.text_embedder.linear_1", t.textLinear1); lin("time_text_embed.text_embedder.linear_2", t.textLinear2)
        for i in 0..<cfg.numLayers {
            let b = try doubleBlock(i), p = "transformer_blocks.\(i)"
            lin("\(p).norm1.linear", b.norm1); lin("\(p).norm1_context.linear", b.norm1Context)
            lin("\(p).attn.to_q", b.qkv, rowRange: 0..<d); lin("\(p).attn.to_k", b.qkv, rowRange: d..<(2 * d))
            lin("\(p).attn.to_v", b.qkv, rowRange: (2 * d)..<(3 * d))
            lin("\(p).attn.add_q_proj", b.addQKV, rowRange: 0..<d); lin("\(p).attn.add_k_proj", b.addQKV, rowRange: d..<(2 * d))
            lin("\(p).attn.add_v_proj", b.addQKV, rowRange: (2 * d)..<(3 * d))
            lin("\(p).attn.to_out.0", b.toOut); lin("\(p).attn.to_add_out", b.toAddOut)
            lin("\(p).ff.net.0.proj", b.ff0); lin("\(p).ff.net.2", b.ff2)
            lin("\(p).ff_context.net.0.proj", b.ffContext0); lin("\(p).ff_context.net.2", b.ffContext2)
            vec("\(p).attn.norm_q.weight", b.normQ); vec("\(p).attn.norm_k.weight", b.normK)
            vec("\(p).attn.norm_added_q.weight", b.normAddedQ); vec("\(p).attn.norm_added_k.weight", b.normAddedK)
        }
        for i in 0..<cfg.numSingleLayers {
            let b = try singleBlock(i), p = "single_transformer_blocks.\(i)"
            lin("\(p).norm.linear", b.norm)
            lin("\(p).attn.to_q", b.linear1, rowRange: 0..<d); lin("\(p).attn.to_k", b.linear1, rowRange: d..<(2 * d))
            lin("\(p).attn.to_v", b.linear1, rowRange: (2 * d)..<(3 * d))
            lin("\(p).proj_mlp", b.linear1, rowRange: (3 * d)..<(3 * d + cfg.mlpDim))
            lin("\(p).proj_out", b.projOut)
            vec("\(p).attn.norm_q.weight", b.normQ); vec("\(p).attn.norm_k.weight", b.normK)
        }
        lin("norm_out.linear", t.normOut); lin("proj_out", t.projOut)
        return out
    }

    /// Writes a diffusers model folder (`config.json` + `diffusion_pytorch_model.safetensors`, F32) that
    /// diffusers' `FluxTransformer2DModel.from_pretrained` and this engine load. Both files are written to
    /// temporary names first.
    public func writeDiffusersFolder(_ path: String, metadata: [String: String] = [:], dtype: DType = .F32) throws {
        guard [.F32, .BF16, .F16].contains(dtype) else { throw FluxError.badInput("export dtype must be F32, BF16 or F16, not \(dtype)") }
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw FluxError.io("cannot create model folder \(path): \(error.localizedDescription)")
        }
        var w = SafeTensorsWriter(metadata: metadata.merging(["format": "pt"]) { a, _ in a })
        for (name, shape, values) in try diffusersTensors() {
            if values.contains(where: { !$0.isFinite }) { throw FluxError.badInput("refusing to write \(path): \(name) is not finite") }
            if dtype == .F32 {
                w.add(name, shape: shape, floats: values.map { Float($0) })
            } else {
                w.add(name, shape: shape, halfPrecisionFrom: values.map { Float($0) }, dtype: dtype)
            }
        }
        do {
            try w.write(to: (path as NSString).appendingPathComponent("diffusion_pytorch_model.safetensors"))
        } catch { throw FluxError.io("\(error)") }
        // diffusers' config.json also names the class; the extra keys are what from_pretrained expects.
        var json = try JSONSerialization.jsonObject(with: config.jsonData()) as! [String: Any]
        json["_class_name"] = "FluxTransformer2DModel"
        json["out_channels"] = config.outChannels as Any? ?? NSNull()
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        let cfgPath = (path as NSString).appendingPathComponent("config.json")
        let tmp = (path as NSString).appendingPathComponent(".config.json.tmp")
        do {
            try data.write(to: URL(fileURLWithPath: tmp))
            if fm.fileExists(atPath: cfgPath) { try fm.removeItem(atPath: cfgPath) }
            try fm.moveItem(atPath: tmp, toPath: cfgPath)
        } catch { throw FluxError.io("cannot write \(cfgPath): \(error.localizedDescription)") }
    }
}
