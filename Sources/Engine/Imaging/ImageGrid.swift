import Foundation

/// Tiles images into one picture with a gap between cells and optional text labels under each image,
/// drawn with the built-in 5×7 font (capitals). `write` also saves the labels, unabridged, in a sidecar
/// text file next to the PNG.
public struct ImageGrid {
    public var columns: Int
    /// Integer nearest-neighbour enlargement of each image (32 px scenes need 4 for a readable caption).
    public var scale: Int
    public var gap: Int
    /// Text lines under each image (0 = no labels).
    public var labelLines: Int
    public var background: (Float, Float, Float)
    public var textColor: (Float, Float, Float)

    public init(columns: Int = 8, scale: Int = 4, gap: Int = 4, labelLines: Int = 2,
                background: (Float, Float, Float) = (1, 1, 1), textColor: (Float, Float, Float) = (0, 0, 0)) {
        self.columns = max(1, columns)
        self.scale = max(1, scale)
        self.gap = max(0, gap)
        self.labelLines = max(0, labelLines)
        self.background = background
        self.textColor = textColor
    }

    /// The tiled picture. All images must have the same size; `labels`, if given, one per image.
    public func render(_ images: [RGBImage], labels: [String]? = nil) -> RGBImage {
        precondition(!images.isEmpty, "ImageGrid needs at least one image")
        precondition(labels == nil || labels!.count == images.count, "one label per image")
        let w = images[0].width * scale, h = images[0].height * scale
        precondition(images.allSatisfy { $0.width * scale == w && $0.height * scale == h }, "images differ in size")
        let lines = labels == nil ? 0 : labelLines
        let labelH = lines == 0 ? 0 : lines * Font5x7.lineHeight + 2
        let cols = min(columns, images.count), rows = (images.count + cols - 1) / cols
        let cellW = w, cellH = h + labelH
        let W = gap + cols * (cellW + gap), H = gap + rows * (cellH + gap)
        var out = RGBImage(width: W, height: H, fill: background)
        let maxChars = max(1, (cellW + 1) / Font5x7.advance)
        for (k, im) in images.enumerated() {
            let x0 = gap + (k % cols) * (cellW + gap), y0 = gap + (k / cols) * (cellH + gap)
            let big = im.upscaled(by: scale)
            for c in 0..<3 { for y in 0..<h { for x in 0..<w { out[c, y0 + y, x0 + x] = big[c, y, x] } } }
            if let labels, lines > 0 {
                for (li, line) in Font5x7.wrap(labels[k], maxChars: maxChars, maxLines: lines).enumerated() {
                    Font5x7.draw(line, into: &out, x: x0, y: y0 + h + 2 + li * Font5x7.lineHeight, color: textColor)
                }
            }
        }
        return out
    }

    /// Renders and writes the grid as PNG; with labels, also `<path without .png>.txt` listing
    /// "row col label" for each cell (written atomically too).
    public func write(_ images: [RGBImage], labels: [String]? = nil, to path: String) throws {
        try PNG.write(render(images, labels: labels), to: path)
        guard let labels else { return }
        let cols = min(columns, images.count)
        var text = ""
        for (k, l) in labels.enumerated() { text += "\(k / cols) \(k % cols) \(l)\n" }
        let side = (path.hasSuffix(".png") ? String(path.dropLast(4)) : path) + ".txt"
        do { try text.write(toFile: side, atomically: true, encoding: .utf8) } catch {
            throw ImageError.png(path: side, message: "cannot write the label sidecar: \(error.localizedDescription)")
        }
    }
}
