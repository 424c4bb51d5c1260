import Foundation

/// The IDX format of (Fashion-)MNIST: 2 zero bytes, a type byte (0x08 = unsigned byte, the only type read
/// here), the number of dimensions, each dimension as a big-endian UInt32, then the data in row-major
/// order. Reads the uncompressed files (scripts/fetch_datasets.sh gunzips the Debian package's .gz files).
public struct IDXArray: Sendable, Equatable {
    public var shape: [Int]
    public var data: [UInt8]

    public init(shape: [Int], data: [UInt8]) {
        precondition(shape.reduce(1, *) == data.count)
        self.shape = shape
        self.data = data
    }

    /// Reads an IDX file of unsigned bytes. `dataset` names the data set in the missing-file message.
    public static func read(path: String, dataset: String = "dataset") throws -> IDXArray {
        guard FileManager.default.fileExists(atPath: path) else {
            throw WorldError.missingDatasetFile(dataset: dataset, path: path)
        }
        let bytes: Data
        do { bytes = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw WorldError.badFile(path: path, reason: "cannot be read (\(error.localizedDescription))")
        }
        return try parse(bytes, path: path)
    }

    public static func parse(_ bytes: Data, path: String = "<memory>") throws -> IDXArray {
        let b = [UInt8](bytes)
        if b.count >= 2 && b[0] == 0x1F && b[1] == 0x8B {
            throw WorldError.badFile(
                path: path, reason: "is gzip-compressed; run scripts/fetch_datasets.sh, which unpacks the IDX files")
        }
        guard b.count >= 4, b[0] == 0, b[1] == 0 else {
            throw WorldError.badFile(path: path, reason: "not an IDX file (bad magic)")
        }
        guard b[2] == 0x08 else {
            throw WorldError.badFile(path: path, reason: "IDX element type 0x\(String(b[2], radix: 16)) is not unsigned byte")
        }
        let nd = Int(b[3])
        guard nd >= 1, b.count >= 4 + 4 * nd else {
            throw WorldError.badFile(path: path, reason: "truncated IDX header")
        }
        var shape = [Int]()
        for d in 0..<nd {
            let o = 4 + 4 * d
            shape.append(Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]))
        }
        let header = 4 + 4 * nd
        let count = shape.reduce(1, *)
        guard b.count == header + count else {
            throw WorldError.badFile(
                path: path, reason: "IDX shape \(shape) needs \(header + count) bytes, the file has \(b.count)")
        }
        return IDXArray(shape: shape, data: Array(b[header...]))
    }

    /// Serialises to IDX (unsigned bytes).
    public func encoded() -> Data {
        var out = [UInt8](arrayLiteral: 0, 0, 0x08, UInt8(shape.count))
        for d in shape { out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        out += data
        return Data(out)
    }
}
