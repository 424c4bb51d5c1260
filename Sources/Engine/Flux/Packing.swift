/// FLUX 2×2 latent packing (flux.md §3.1): z [B, C, h, w] → [B, (h/2)(w/2), 4C], features ordered
/// channel-major then (dy, dx); tokens row-major over the (h/2, w/2) grid.
public enum Packing {
    public static func pack<T>(_ z: [T], batch B: Int, channels C: Int, height h: Int, width w: Int) -> [T] {
        precondition(h % 2 == 0 && w % 2 == 0 && z.count == B * C * h * w)
        let gh = h / 2, gw = w / 2
        var out = z
        for b in 0..<B {
            for r in 0..<gh {
                for c in 0..<gw {
                    for ch in 0..<C {
                        for dy in 0..<2 {
                            for dx in 0..<2 {
                                let tok = r * gw + c, f = ch * 4 + dy * 2 + dx
                                out[(b * gh * gw + tok) * 4 * C + f] = z[((b * C + ch) * h + 2 * r + dy) * w + 2 * c + dx]
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    public static func unpack<T>(_ p: [T], batch B: Int, channels C: Int, height h: Int, width w: Int) -> [T] {
        precondition(h % 2 == 0 && w % 2 == 0 && p.count == B * C * h * w)
        let gh = h / 2, gw = w / 2
        var out = p
        for b in 0..<B {
            for r in 0..<gh {
                for c in 0..<gw {
                    for ch in 0..<C {
                        for dy in 0..<2 {
                            for dx in 0..<2 {
                                let tok = r * gw + c, f = ch * 4 + dy * 2 + dx
                                out[((b * C + ch) * h + 2 * r + dy) * w + 2 * c + dx] = p[(b * gh * gw + tok) * 4 * C + f]
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Image position ids [gh·gw, 3]: [0, row, col] row-major (axis 1 = row, axis 2 = column).
    public static func imageIds(gridHeight gh: Int, gridWidth gw: Int) -> [Double] {
        var ids = [Double](repeating: 0, count: gh * gw * 3)
        for r in 0..<gh {
            for c in 0..<gw {
                ids[(r * gw + c) * 3 + 1] = Double(r)
                ids[(r * gw + c) * 3 + 2] = Double(c)
            }
        }
        return ids
    }

    /// Text position ids [Lt, 3]: all zero in FLUX.1 text-to-image.
    public static func textIds(count: Int) -> [Double] { [Double](repeating: 0, count: count * 3) }
}
