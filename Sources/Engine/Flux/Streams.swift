import BLAS

// FLUX joins the text and image streams into one sequence per sample, text first (flux.md §8.5).
// With a batch, rows of sample b are [text_b ; image_b]; these copy between that joint layout and the
// separate per-stream buffers.

/// joint[b·S + t] = txt[b·Lt + t]; joint[b·S + Lt + i] = img[b·Li + i]. Row width C; joint row stride ldj.
func joinStreams<T>(
    _ joint: UnsafeMutablePointer<T>, ldj: Int, txt: UnsafePointer<T>, img: UnsafePointer<T>,
    B: Int, Lt: Int, Li: Int, C: Int
) {
    let S = Lt + Li
    for b in 0..<B {
        if ldj == C {
            (joint + b * S * C).update(from: txt + b * Lt * C, count: Lt * C)
            (joint + (b * S + Lt) * C).update(from: img + b * Li * C, count: Li * C)
        } else {
            for t in 0..<Lt { (joint + (b * S + t) * ldj).update(from: txt + (b * Lt + t) * C, count: C) }
            for i in 0..<Li { (joint + (b * S + Lt + i) * ldj).update(from: img + (b * Li + i) * C, count: C) }
        }
    }
}

/// The inverse of joinStreams (either output may be nil to skip it).
func splitStreams<T>(
    _ joint: UnsafePointer<T>, ldj: Int, txt: UnsafeMutablePointer<T>?, img: UnsafeMutablePointer<T>?,
    B: Int, Lt: Int, Li: Int, C: Int
) {
    let S = Lt + Li
    for b in 0..<B {
        if let txt { for t in 0..<Lt { (txt + (b * Lt + t) * C).update(from: joint + (b * S + t) * ldj, count: C) } }
        if let img { for i in 0..<Li { (img + (b * Li + i) * C).update(from: joint + (b * S + Lt + i) * ldj, count: C) } }
    }
}

/// x[r, c] *= mask[c] for the `cols` columns of each row (a neuron mask broadcast over tokens).
func scaleColumns<T: Scalar>(_ x: UnsafeMutablePointer<T>, ld: Int, rows: Int, cols: Int, by mask: UnsafePointer<T>) {
    Parallel.forEachChunk(rows, workPerItem: cols) { range in
        for r in range {
            let xr = x + r * ld
            for c in 0..<cols { xr[c] *= mask[c] }
        }
    }
}

/// Per-head mask on an attention output [rows, H·D]: head h's D columns are scaled by mask[h].
func scaleHeads<T: Scalar>(_ x: UnsafeMutablePointer<T>, ld: Int, rows: Int, heads: Int, D: Int, by mask: UnsafePointer<T>) {
    for r in 0..<rows {
        for h in 0..<heads {
            let v = x + r * ld + h * D, m = mask[h]
            for d in 0..<D { v[d] *= m }
        }
    }
}
