import Foundation
import Imaging

/// Structural similarity (Wang et al. 2004) as torchmetrics computes it by default: an 11×11 Gaussian
/// window (σ 1.5), K1 0.01, K2 0.03, data range 1, the image padded by reflection (edge not repeated) so
/// every pixel has a window, variances clamped at 0, averaged over channels and pixels.
public enum SSIM {
    static let radius = 5
    static let window: [Double] = {
        let g = (-radius...radius).map { Foundation.exp(-Double($0 * $0) / (2 * 1.5 * 1.5)) }
        let s = g.reduce(0, +)
        return g.map { $0 / s }
    }()

    public static func mean(_ a: RGBImage, _ b: RGBImage) -> Double {
        precondition(a.width == b.width && a.height == b.height, "SSIM needs images of the same size")
        let w = a.width, h = a.height, r = radius
        guard w > r, h > r else { return a == b ? 1 : 0 }
        func reflect(_ i: Int, _ n: Int) -> Int { i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i) }
        let c1 = 0.01 * 0.01, c2 = 0.03 * 0.03
        var total = 0.0, count = 0
        for c in 0..<3 {
            for y in 0..<h {
                for x in 0..<w {
                    var mx = 0.0, my = 0.0, xx = 0.0, yy = 0.0, xy = 0.0
                    for dy in -r...r {
                        let wy = window[dy + r]
                        for dx in -r...r {
                            let k = wy * window[dx + r]
                            let py = reflect(y + dy, h), px = reflect(x + dx, w)
                            let p = Double(a[c, py, px]), q = Double(b[c, py, px])
                            mx += k * p; my += k * q; xx += k * p * p; yy += k * q * q; xy += k * p * q
                        }
                    }
                    let vx = max(0, xx - mx * mx), vy = max(0, yy - my * my), cov = xy - mx * my
                    total += ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
                    count += 1
                }
            }
        }
        return total / Double(count)
    }
}
