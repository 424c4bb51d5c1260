import Imaging

/// The model's view of a 32×32 scene: space-to-depth by 2, then FLUX's 2×2 packing, values scaled to [−1, 1].
///
/// For an image [3, H, W] (H, W divisible by 4) the result is [(H/4)(W/4) tokens, 48 features]:
///   space-to-depth: s2d[ch][i][j] with ch = c·4 + ey·2 + ex equals image[c][2i + ey][2j + ex]  → [12, H/2, W/2]
///   packing:        token t = r·(W/4) + q, feature f = ch·4 + dy·2 + dx equals s2d[ch][2r + dy][2q + dx]
/// so token t = r·(W/4)+q, feature f = (c·4 + ey·2 + ex)·4 + dy·2 + dx holds pixel
/// (channel c, y = 4r + 2dy + ey, x = 4q + 2dx + ex), as 2·v − 1. A 32×32 scene gives 64 tokens × 48.
/// (The packing step is exactly `Flux.Packing.pack` with C = 12 on the 16×16 grid.)
public enum SceneLatent {
    public static let featuresPerToken = 48

    public static func tokenCount(width: Int, height: Int) -> Int { (width / 4) * (height / 4) }

    /// [3, H, W] → [12, H/2, W/2], channel c·4 + ey·2 + ex.
    public static func spaceToDepth(_ img: [Float], channels C: Int, height H: Int, width W: Int) -> [Float] {
        precondition(H % 2 == 0 && W % 2 == 0 && img.count == C * H * W)
        let h = H / 2, w = W / 2
        var out = [Float](repeating: 0, count: img.count)
        for c in 0..<C { for ey in 0..<2 { for ex in 0..<2 {
            let ch = c * 4 + ey * 2 + ex
            for i in 0..<h { for j in 0..<w { out[(ch * h + i) * w + j] = img[(c * H + 2 * i + ey) * W + 2 * j + ex] } }
        } } }
        return out
    }

    /// Inverse of `spaceToDepth` (`channels` is the image's channel count, 3 for RGB).
    public static func depthToSpace(_ s: [Float], channels C: Int, height H: Int, width W: Int) -> [Float] {
        precondition(H % 2 == 0 && W % 2 == 0 && s.count == C * H * W)
        let h = H / 2, w = W / 2
        var out = [Float](repeating: 0, count: s.count)
        for c in 0..<C { for ey in 0..<2 { for ex in 0..<2 {
            let ch = c * 4 + ey * 2 + ex
            for i in 0..<h { for j in 0..<w { out[(c * H + 2 * i + ey) * W + 2 * j + ex] = s[(ch * h + i) * w + j] } }
        } } }
        return out
    }

    /// FLUX 2×2 packing of z [C, h, w] → [(h/2)(w/2), 4C].
    public static func pack(_ z: [Float], channels C: Int, height h: Int, width w: Int) -> [Float] {
        precondition(h % 2 == 0 && w % 2 == 0 && z.count == C * h * w)
        let gw = w / 2
        var out = [Float](repeating: 0, count: z.count)
        for ch in 0..<C { for y in 0..<h { for x in 0..<w {
            let tok = (y / 2) * gw + x / 2, f = ch * 4 + (y % 2) * 2 + x % 2
            out[tok * 4 * C + f] = z[(ch * h + y) * w + x]
        } } }
        return out
    }

    /// Inverse of `pack`.
    public static func unpack(_ p: [Float], channels C: Int, height h: Int, width w: Int) -> [Float] {
        precondition(h % 2 == 0 && w % 2 == 0 && p.count == C * h * w)
        let gw = w / 2
        var out = [Float](repeating: 0, count: p.count)
        for ch in 0..<C { for y in 0..<h { for x in 0..<w {
            let tok = (y / 2) * gw + x / 2, f = ch * 4 + (y % 2) * 2 + x % 2
            out[(ch * h + y) * w + x] = p[tok * 4 * C + f]
        } } }
        return out
    }

    /// Image in [0, 1] → tokens [(H/4)(W/4), 48] in [−1, 1] (token-major).
    public static func tokens(from image: RGBImage) -> [Float] {
        precondition(image.width % 4 == 0 && image.height % 4 == 0, "width and height must be multiples of 4")
        let s = spaceToDepth(image.data.map { 2 * $0 - 1 }, channels: 3, height: image.height, width: image.width)
        return pack(s, channels: 12, height: image.height / 2, width: image.width / 2)
    }

    /// Tokens [(H/4)(W/4), 48] in [−1, 1] → image in [0, 1] (not clamped; `rgb8()` clamps).
    public static func image(fromTokens t: [Float], width: Int = 32, height: Int = 32) -> RGBImage {
        precondition(width % 4 == 0 && height % 4 == 0 && t.count == 3 * width * height, "token count does not match the image size")
        let s = unpack(t, channels: 12, height: height / 2, width: width / 2)
        let img = depthToSpace(s, channels: 3, height: height, width: width)
        return RGBImage(width: width, height: height, data: img.map { ($0 + 1) / 2 })
    }

    /// A batch: [B, tokens, 48] concatenated.
    public static func tokens(from images: [RGBImage]) -> [Float] { images.flatMap { tokens(from: $0) } }
}
