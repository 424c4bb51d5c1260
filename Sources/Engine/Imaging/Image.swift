/// A float RGB image, channel-major: `data[(c * height + y) * width + x]` for channel c ∈ {0 R, 1 G, 2 B},
/// values nominally in [0, 1] (layout [3, H, W], the model's NCHW without the batch axis).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var data: [Float]

    public init(width: Int, height: Int, data: [Float]) {
        precondition(data.count == 3 * width * height, "RGBImage needs 3·W·H values")
        self.width = width
        self.height = height
        self.data = data
    }

    public init(width: Int, height: Int, fill: (Float, Float, Float) = (0, 0, 0)) {
        self.width = width
        self.height = height
        let n = width * height
        data = [Float](repeating: fill.0, count: n) + [Float](repeating: fill.1, count: n) + [Float](repeating: fill.2, count: n)
    }

    @inlinable public subscript(c: Int, y: Int, x: Int) -> Float {
        get { data[(c * height + y) * width + x] }
        set { data[(c * height + y) * width + x] = newValue }
    }

    /// Interleaved 8-bit RGB ([H, W, 3], row-major), each value round(clamp(v, 0, 1) · 255).
    public func rgb8() -> [UInt8] {
        let n = width * height
        var out = [UInt8](repeating: 0, count: 3 * n)
        for c in 0..<3 {
            for i in 0..<n {
                let v = min(max(data[c * n + i], 0), 1)
                out[3 * i + c] = UInt8((v * 255).rounded())
            }
        }
        return out
    }

    /// From interleaved 8-bit RGB ([H, W, 3]), v / 255.
    public init(rgb8: [UInt8], width: Int, height: Int) {
        precondition(rgb8.count == 3 * width * height)
        let n = width * height
        var d = [Float](repeating: 0, count: 3 * n)
        for i in 0..<n { for c in 0..<3 { d[c * n + i] = Float(rgb8[3 * i + c]) / 255 } }
        self.init(width: width, height: height, data: d)
    }

    /// Nearest-neighbour enlargement by an integer factor.
    public func upscaled(by k: Int) -> RGBImage {
        precondition(k >= 1)
        if k == 1 { return self }
        var out = RGBImage(width: width * k, height: height * k)
        for c in 0..<3 { for y in 0..<height * k { for x in 0..<width * k { out[c, y, x] = self[c, y / k, x / k] } } }
        return out
    }
}
