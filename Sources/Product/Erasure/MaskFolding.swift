import BLAS
import Flux

/// Folds binary masks into resident weights in memory — the same zeroing `Baker` applies to checkpoint files
/// (a masked FF unit zeroes its column of the down projection, a masked modulation output its row and bias,
/// a masked head its columns of the output projections), for code that needs the baked model without files.
public enum MaskFolding {
    public static func fold(_ masks: MaskSet<Float>, into w: FluxWeights<Float>) throws {
        let cfg = w.config, D = cfg.attentionHeadDim, d = cfg.dim
        func zeroColumns(_ l: LinearWeights<Float>, _ cols: [Int]) {
            for r in 0..<l.outDim { for c in cols { l.w[r * l.inDim + c] = 0 } }
        }
        func zeroRows(_ l: LinearWeights<Float>, _ rows: [Int]) {
            for r in rows {
                for c in 0..<l.inDim { l.w[r * l.inDim + c] = 0 }
                l.b[r] = 0
            }
        }
        for (site, m) in masks.values {
            try site.validate(for: cfg)
            if let bad = (0..<m.count).first(where: { m[$0] != 0 && m[$0] != 1 }) {
                throw ErasureError.badInput("mask '\(site)' is not binary (value \(m[bad]) at \(bad)); only binary masks fold into weights")
            }
            let off = (0..<m.count).filter { m[$0] == 0 }
            guard !off.isEmpty else { continue }
            let heads = off.flatMap { h in (h * D)..<((h + 1) * D) }
            switch site.kind {
            case .ff: zeroColumns(try w.doubleBlock(site.block).ff2, off)
            case .ffContext: zeroColumns(try w.doubleBlock(site.block).ffContext2, off)
            case .norm1: zeroRows(try w.doubleBlock(site.block).norm1, off)
            case .norm1Context: zeroRows(try w.doubleBlock(site.block).norm1Context, off)
            case .singleNorm: zeroRows(try w.singleBlock(site.block).norm, off)
            case .doubleAttn:
                let b = try w.doubleBlock(site.block)
                zeroColumns(b.toOut, heads); zeroColumns(b.toAddOut, heads)
            case .singleAttn: zeroColumns(try w.singleBlock(site.block).projOut, heads)
            case .projMLP: zeroColumns(try w.singleBlock(site.block).projOut, off.map { d + $0 })
            case .addQ, .addK, .addV: zeroRows(try w.doubleBlock(site.block).addQKV, off.map { site.kind.textQKVSlot! * d + $0 })
            }
        }
        w.weightsChanged()
    }
}
