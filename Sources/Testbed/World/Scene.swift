/// Where and how large the object sits in the canvas.
public struct Placement: Sendable, Equatable {
    /// Size factor relative to the 28×28 source (1 = 28 px).
    public var scale: Float
    /// Shift of the object's centre from the canvas centre, in pixels (+x right, +y down).
    public var dx: Float
    public var dy: Float

    public init(scale: Float = 1, dx: Float = 0, dy: Float = 0) {
        self.scale = scale
        self.dx = dx
        self.dy = dy
    }

    public static let identity = Placement()
    public static let scaleRange: ClosedRange<Float> = 0.8...1.1
    public static let maxShift: Float = 2

    /// scale ~ U[0.8, 1.1), dx, dy ~ U[−2, 2), drawn in that order.
    public static func random(_ rng: inout WorldRNG) -> Placement {
        let s = Float(rng.uniform(Double(scaleRange.lowerBound), Double(scaleRange.upperBound)))
        let dx = Float(rng.uniform(-Double(maxShift), Double(maxShift)))
        let dy = Float(rng.uniform(-Double(maxShift), Double(maxShift)))
        return Placement(scale: s, dx: dx, dy: dy)
    }
}

/// Renders a 28×28 grayscale silhouette as a tinted object on a coloured background.
public enum SceneRenderer {
    public static let size = 32

    /// The mask resampled into the canvas: alpha[y][x] in [0, 1], row-major [size, size].
    ///
    /// Output pixel (x, y) has centre (x + ½, y + ½); its source position in mask pixel-centre coordinates is
    ///   u = (x + ½ − (size/2 + dx)) / scale + 14 − ½   (v likewise with y, dy),
    /// sampled bilinearly with zero outside the mask. At scale 1 and zero shift this copies the mask to
    /// rows/columns 2…29 exactly.
    public static func alpha<C: RandomAccessCollection>(mask: C, placement p: Placement, size: Int = SceneRenderer.size) -> [Float]
    where C.Element == UInt8, C.Index == Int {
        precondition(mask.count == Dataset.pixels && p.scale > 0)
        let base = mask.startIndex
        let inv = 1 / p.scale
        let cx = Float(size) / 2 + p.dx, cy = Float(size) / 2 + p.dy
        @inline(__always) func m(_ yy: Int, _ xx: Int) -> Float {
            (yy < 0 || yy >= 28 || xx < 0 || xx >= 28) ? 0 : Float(mask[base + yy * 28 + xx])
        }
        var out = [Float](repeating: 0, count: size * size)
        for y in 0..<size {
            let v = (Float(y) + 0.5 - cy) * inv + 13.5
            let y0 = Int(v.rounded(.down)), fy = v - Float(y0)
            if y0 < -1 || y0 > 27 { continue }
            for x in 0..<size {
                let u = (Float(x) + 0.5 - cx) * inv + 13.5
                let x0 = Int(u.rounded(.down)), fx = u - Float(x0)
                if x0 < -1 || x0 > 27 { continue }
                let top = m(y0, x0) * (1 - fx) + m(y0, x0 + 1) * fx
                let bot = m(y0 + 1, x0) * (1 - fx) + m(y0 + 1, x0 + 1) * fx
                out[y * size + x] = (top * (1 - fy) + bot * fy) / 255
            }
        }
        return out
    }

    /// pixel = bg·(1 − a) + obj·a, a the resampled mask intensity / 255.
    public static func render<C: RandomAccessCollection>(mask: C, object: NamedColor, background: NamedColor,
                                                         placement: Placement = .identity, size: Int = SceneRenderer.size) -> RGBImage
    where C.Element == UInt8, C.Index == Int {
        let a = alpha(mask: mask, placement: placement, size: size)
        let o = object.rgb, b = background.rgb
        let oc = [o.0, o.1, o.2], bc = [b.0, b.1, b.2]
        var img = RGBImage(width: size, height: size)
        let n = size * size
        img.data.withUnsafeMutableBufferPointer { d in
            for c in 0..<3 {
                for i in 0..<n { d[c * n + i] = bc[c] * (1 - a[i]) + oc[c] * a[i] }
            }
        }
        return img
    }
}
