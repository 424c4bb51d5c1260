// Writes safetensors files laid out exactly like the Rust reference (`safetensors.save_file`):
// tensors sorted by dtype (widest first) then name, compact JSON header with `__metadata__` first,
// padded with spaces so the data starts 8-byte aligned, data contiguous.

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public struct SafeTensorsWriter {
    /// Written as `__metadata__` (keys sorted) when not empty.
    public var metadata: [String: String]

    private struct Entry {
        let name: String
        let dtype: DType
        let shape: [Int]
        let data: Data

        /// Bytes held now, or produced into a scratch buffer when the file is written.
        enum Data {
            case bytes([UInt8])
            case deferred(byteCount: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void)
        }

        init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            self.name = name; self.dtype = dtype; self.shape = shape; data = .bytes(bytes)
        }

        init(name: String, dtype: DType, shape: [Int], byteCount: Int, fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
            self.name = name; self.dtype = dtype; self.shape = shape; data = .deferred(byteCount: byteCount, fill: fill)
        }

        var byteCount: Int {
            switch data {
            case .bytes(let b): return b.count
            case .deferred(let n, _): return n
            }
        }

        /// Hands the entry's bytes to `body` (for deferred entries, a scratch buffer that `fill` wrote).
        func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
            switch data {
            case .bytes(let b): return try b.withUnsafeBytes(body)
            case .deferred(let n, let fill):
                let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(n, 1), alignment: 16)
                defer { scratch.deallocate() }
                let exact = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n])
                try fill(exact)
                return try body(UnsafeRawBufferPointer(exact))
            }
        }
    }

    private var entries: [Entry] = []
    private var names = Set<String>()
    /// The first invalid `add`, reported by `write` (so `add` can stay non-throwing).
    private var problem: (tensor: String, message: String)?

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Number of tensors added so far.
    public var count: Int { entries.count }

    /// Adds an F32 tensor.
    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        addElements(name, shape: shape, dtype: .F32, values: floats)
    }

    /// Adds an F64 tensor.
    public mutating func add(_ name: String, shape: [Int], doubles: [Double]) {
        addElements(name, shape: shape, dtype: .F64, values: doubles)
    }

    /// Adds an I64 tensor.
    public mutating func add(_ name: String, shape: [Int], int64s: [Int64]) {
        addElements(name, shape: shape, dtype: .I64, values: int64s)
    }

    /// Adds a tensor of any dtype from its little-endian bytes (`count × dtype.byteSize` of them).
    public mutating func add(_ name: String, shape: [Int], dtype: DType, bytes: [UInt8]) {
        guard let count = validate(name, shape) else { return }
        let (needed, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, needed == bytes.count else {
            reject(name, "shape \(shape) (\(dtype.rawValue)) needs \(count) × \(dtype.byteSize) bytes but \(bytes.count) were given")
            return
        }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    /// Adds a tensor of any dtype whose bytes are produced only when the file is written: `fill` gets a
    /// buffer of exactly `count × dtype.byteSize` bytes to fill with the little-endian data. The writer
    /// then holds one tensor at a time, so a multi-GB checkpoint can be copied (e.g. out of a mapped file)
    /// without a copy of it in memory. An error thrown by `fill` aborts `write` (nothing is left behind).
    public mutating func add(_ name: String, shape: [Int], dtype: DType, fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
        guard let count = validate(name, shape) else { return }
        let (needed, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else {
            reject(name, "shape \(shape) is too large")
            return
        }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, byteCount: needed, fill: fill))
    }

    /// Adds a BF16 (round to nearest even, like torch) or F16 tensor converted from Float.
    public mutating func add(_ name: String, shape: [Int], halfPrecisionFrom values: [Float], dtype: DType) {
        let bits: [UInt16]
        switch dtype {
        case .BF16: bits = values.map(floatToBF16)
        case .F16: bits = values.map { Float16($0).bitPattern }
        default:
            reject(name, "halfPrecisionFrom needs dtype BF16 or F16, not \(dtype.rawValue)")
            return
        }
        addElements(name, shape: shape, dtype: dtype, values: bits)
    }

    private mutating func addElements<T>(_ name: String, shape: [Int], dtype: DType, values: [T]) {
        guard let count = validate(name, shape) else { return }
        guard count == values.count else {
            reject(name, "shape \(shape) has \(count) elements but \(values.count) values were given")
            return
        }
        // Host is little-endian (checked at compile time in SafeTensorsFile.swift), so the
        // in-memory bytes are the file bytes.
        let bytes = values.withUnsafeBytes { [UInt8]($0) }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    /// Checks the name and shape; returns the element count, or nil after recording a problem.
    private mutating func validate(_ name: String, _ shape: [Int]) -> Int? {
        if name == "__metadata__" {
            reject(name, "'__metadata__' is reserved and cannot be a tensor name")
            return nil
        }
        guard names.insert(name).inserted else {
            reject(name, "added twice")
            return nil
        }
        var count = 1
        for d in shape {
            guard d >= 0 else {
                reject(name, "shape \(shape) has a negative dimension")
                return nil
            }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else {
                reject(name, "shape \(shape) is too large")
                return nil
            }
            count = p
        }
        return count
    }

    private mutating func reject(_ name: String, _ message: String) {
        if problem == nil { problem = (name, message) }
    }

    // MARK: Serialising

    /// The complete file contents (header and data) in memory.
    public func serialized(path: String = "<memory>") throws -> [UInt8] {
        let (prefix, ordered) = try layout(path: path)
        var out = prefix
        out.reserveCapacity(prefix.count + ordered.reduce(0) { $0 + $1.byteCount })
        for entry in ordered { try entry.withBytes { out += $0 } }
        return out
    }

    /// Writes the file atomically: the data goes to a hidden temporary file in the same folder,
    /// which is flushed to disk and then renamed over `path`. A failure removes the temporary, so
    /// `path` is either the old file or the complete new one, never a partial write.
    public func write(to path: String) throws {
        let (prefix, ordered) = try layout(path: path)
        func fail(_ message: String) -> SafeTensorsError { SafeTensorsError(file: path, message: message) }

        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temp = (folder as NSString).appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")

        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw fail("cannot create a temporary file in \(folder): \(errnoDescription(errno))")
        }
        var closed = false
        var renamed = false
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(temp) }
        }
        try prefix.withUnsafeBytes { try writeAll(fd, $0, fail) }
        for entry in ordered { try entry.withBytes { try writeAll(fd, $0, fail) } }
        guard fsync(fd) == 0 else { throw fail("cannot flush to disk: \(errnoDescription(errno))") }
        closed = true
        guard close(fd) == 0 else { throw fail("cannot close the temporary file: \(errnoDescription(errno))") }
        guard rename(temp, path) == 0 else {
            throw fail("cannot move the temporary file into place: \(errnoDescription(errno))")
        }
        renamed = true
    }

    private func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer, _ fail: (String) -> SafeTensorsError) throws {
        var offset = 0
        while offset < raw.count {
            // Large tensors are written in 1 GiB pieces (Linux caps one write at ~2 GiB).
            let n = systemWrite(fd, raw.baseAddress! + offset, min(raw.count - offset, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write failed: \(errnoDescription(errno))")
            }
            offset += n
        }
    }

    /// The 8-byte length + padded header, and the entries in file order.
    private func layout(path: String) throws -> ([UInt8], [Entry]) {
        if let problem {
            throw SafeTensorsError(file: path, tensor: problem.tensor, message: problem.message)
        }
        // Same order as the reference: dtype rank descending, then name (byte order).
        let ordered = entries.sorted {
            $0.dtype.referenceRank != $1.dtype.referenceRank
                ? $0.dtype.referenceRank > $1.dtype.referenceRank
                : Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8))
        }
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
                .map { jsonQuoted($0) + ":" + jsonQuoted(metadata[$0]!) }
                .joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for entry in ordered {
            if !first { json += "," }
            first = false
            let shape = entry.shape.map(String.init).joined(separator: ",")
            json += "\(jsonQuoted(entry.name)):{\"dtype\":\"\(entry.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + entry.byteCount)]}"
            offset += entry.byteCount
        }
        json += "}"
        var header = Array(json.utf8)
        // Pad so that 8 + N is a multiple of 8, i.e. the data starts 8-byte aligned.
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
        guard header.count <= HeaderParser.maxHeaderSize else {
            throw SafeTensorsError(file: path, message: "header would be \(header.count) bytes, over the \(HeaderParser.maxHeaderSize)-byte limit")
        }
        var prefix = [UInt8]()
        prefix.reserveCapacity(8 + header.count)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { prefix += $0 }
        prefix += header
        return (prefix, ordered)
    }
}

/// POSIX write(2); a free function because `SafeTensorsWriter.write(to:)` shadows the name.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

/// A value as one JSON string for a `__metadata__` entry, keys sorted: Foundation's encoder otherwise orders
/// keys differently from run to run, and the same seed must write the same bytes.
public func metadataJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
