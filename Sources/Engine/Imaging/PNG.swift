import CPNG
import Foundation

/// 8-bit RGB PNG files through libpng's simplified API (png_image_*). Writes are atomic: a temporary file in
/// the same directory is written, then renamed over the target.
public enum PNG {
    /// Writes interleaved 8-bit RGB ([H, W, 3], row-major).
    public static func write(rgb: [UInt8], width: Int, height: Int, to path: String) throws {
        guard width > 0, height > 0, rgb.count == 3 * width * height else {
            throw ImageError.invalidArgument("PNG.write: \(rgb.count) bytes do not make a \(width)×\(height) RGB image")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty, !FileManager.default.fileExists(atPath: dir) {
            do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw ImageError.png(path: path, message: "cannot create directory \(dir): \(error.localizedDescription)")
            }
        }
        let tmp = path + ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        var img = png_image()
        img.version = UInt32(PNG_IMAGE_VERSION)
        img.width = UInt32(width)
        img.height = UInt32(height)
        img.format = UInt32(PNG_FORMAT_RGB)
        let ok = rgb.withUnsafeBytes { buf in
            png_image_write_to_file(&img, tmp, 0, buf.baseAddress, Int32(3 * width), nil)
        }
        guard ok != 0 else {
            let msg = message(of: &img)
            png_image_free(&img)
            unlink(tmp)
            throw ImageError.png(path: path, message: "libpng could not write it: \(msg)")
        }
        guard rename(tmp, path) == 0 else {
            let e = String(cString: strerror(errno))
            unlink(tmp)
            throw ImageError.png(path: path, message: "cannot rename the temporary file into place: \(e)")
        }
    }

    /// Writes an image with values in [0, 1] (clamped, rounded to 8 bits).
    public static func write(_ image: RGBImage, to path: String) throws {
        try write(rgb: image.rgb8(), width: image.width, height: image.height, to: path)
    }

    /// Reads any PNG libpng understands, converted to 8-bit RGB (alpha composited on black, gray expanded).
    public static func read(path: String) throws -> (rgb: [UInt8], width: Int, height: Int) {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ImageError.png(path: path, message: "file not found")
        }
        var img = png_image()
        img.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_file(&img, path) != 0 else {
            let msg = message(of: &img)
            png_image_free(&img)
            throw ImageError.png(path: path, message: "libpng could not read it: \(msg)")
        }
        img.format = UInt32(PNG_FORMAT_RGB)
        let w = Int(img.width), h = Int(img.height)
        var out = [UInt8](repeating: 0, count: 3 * w * h)
        let ok = out.withUnsafeMutableBytes { buf in
            png_image_finish_read(&img, nil, buf.baseAddress, Int32(3 * w), nil)
        }
        guard ok != 0 else {
            let msg = message(of: &img)
            png_image_free(&img)
            throw ImageError.png(path: path, message: "libpng could not decode it: \(msg)")
        }
        return (out, w, h)
    }

    /// Reads a PNG as an `RGBImage` (v / 255).
    public static func readImage(path: String) throws -> RGBImage {
        let r = try read(path: path)
        return RGBImage(rgb8: r.rgb, width: r.width, height: r.height)
    }

    private static func message(of img: inout png_image) -> String {
        withUnsafeBytes(of: &img.message) { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
    }
}
