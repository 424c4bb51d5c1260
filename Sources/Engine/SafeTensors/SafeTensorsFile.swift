// A read-only, memory-mapped safetensors file. The header is validated completely when the file is
// opened, so every later access is a bounds-checked view into the mapping; tensor data is never
// copied unless the caller decodes it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if _endian(big)
#error("SafeTensors assumes a little-endian host (the format is little-endian and decoding uses memcpy).")
#endif

/// Where one tensor lives in its file.
public struct TensorInfo: Sendable, Equatable, Hashable {
    /// The tensor's name in its file (for a `TensorStore`, before any prefix stripping).
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Absolute byte offset of the data in the file (8 + header length + data_offsets.begin).
    public let dataOffset: Int
    /// Bytes of data (count × dtype.byteSize).
    public let byteCount: Int

    /// Number of elements: the product of `shape`, 1 for a scalar (rank 0), 0 if any dim is 0.
    public var count: Int { shape.reduce(1, *) }

    // Internal: instances come from a validated header, so `count` cannot overflow.
    init(name: String, dtype: DType, shape: [Int], dataOffset: Int, byteCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffset = dataOffset
        self.byteCount = byteCount
    }
}

public final class SafeTensorsFile: @unchecked Sendable {
    // @unchecked: all stored state is immutable after init, and the mapping is read-only.

    /// The path as given to `init(path:)`.
    public let path: String
    /// The `__metadata__` object (empty if absent).
    public let metadata: [String: String]
    /// Size of the whole file in bytes.
    public let fileSize: Int
    /// The N of the 8-byte header length prefix; tensor data starts at 8 + N.
    public let headerLength: Int

    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let table: [String: TensorInfo]
    private let sortedNames: [String]

    /// Tensor names, sorted.
    public var names: [String] { sortedNames }

    /// All tensors, sorted by name.
    public var tensors: [TensorInfo] { sortedNames.map { table[$0]! } }

    /// Opens and maps `path` read-only and validates its whole header (see flux.md §6.1).
    /// Throws `SafeTensorsError` naming the file (and tensor) for any problem; never traps on bad input.
    ///
    /// The mapping lives as long as this object. As with any mmap, truncating the file on disk while
    /// it is open makes later reads fault (SIGBUS): do not rewrite checkpoints that are in use
    /// (`SafeTensorsWriter` replaces files by rename, which is safe).
    public init(path: String) throws {
        self.path = path
        func fail(_ message: String) -> SafeTensorsError { SafeTensorsError(file: path, message: message) }

        // O_NONBLOCK: opening a FIFO by mistake must not hang (it is then rejected as not a regular file).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            let code = errno
            if code == ENOENT { throw fail("no such file") }
            throw fail("cannot open for reading: \(errnoDescription(code))")
        }
        defer { close(fd) }  // the mapping stays valid after the descriptor is closed

        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot stat: \(errnoDescription(errno))") }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw fail("is a directory, not a .safetensors file (use TensorStore to open a checkpoint folder)")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail("is not a regular file") }
        let size = Int(st.st_size)
        if size == 0 { throw fail("file is empty (a safetensors file starts with an 8-byte header length)") }
        if size < 8 { throw fail("file is only \(size) bytes, shorter than the 8-byte header length prefix") }

        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0),
              mapped != UnsafeMutableRawPointer(bitPattern: -1)  // MAP_FAILED
        else { throw fail("cannot memory-map \(size) bytes: \(errnoDescription(errno))") }
        let base = UnsafeRawPointer(mapped)

        // From here on, failures must unmap.
        do {
            let n = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
            if n > UInt64(HeaderParser.maxHeaderSize) {
                throw fail("header length \(n) exceeds the \(HeaderParser.maxHeaderSize)-byte limit (corrupt, or not a safetensors file)")
            }
            let headerLength = Int(n)
            if 8 + headerLength > size {
                throw fail("header length \(headerLength) extends past the end of the file (the file has \(size) bytes, so at most \(size - 8) are available for the header): truncated or not a safetensors file")
            }
            let dataStart = 8 + headerLength
            let header = UnsafeRawBufferPointer(start: base + 8, count: headerLength)
            let parsed = try HeaderParser.parse(header: header, dataLength: size - dataStart, file: path)

            var table = [String: TensorInfo](minimumCapacity: parsed.entries.count)
            for e in parsed.entries {
                table[e.name] = TensorInfo(name: e.name, dtype: e.dtype, shape: e.shape, dataOffset: dataStart + e.begin, byteCount: e.end - e.begin)
            }
            self.table = table
            self.sortedNames = table.keys.sorted()
            self.metadata = parsed.metadata
            self.headerLength = headerLength
        } catch {
            munmap(mapped, size)
            throw error
        }
        self.base = base
        self.mappedLength = size
        self.fileSize = size
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
    }

    public func contains(_ name: String) -> Bool { table[name] != nil }

    /// The tensor's dtype, shape and location. Throws if the file has no such tensor.
    public func info(_ name: String) throws -> TensorInfo {
        if let info = table[name] { return info }
        var message = "no such tensor in this file (it has \(table.count) tensors)"
        for prefix in ["model.diffusion_model.", "model."] where table[prefix + name] != nil {
            message += "; '\(prefix + name)' exists (TensorStore strips such prefixes)"
            break
        }
        throw SafeTensorsError(file: path, tensor: name, message: message)
    }

    /// The tensor's bytes, exactly as stored (little-endian, possibly unaligned). The buffer points
    /// into the mapping and is valid only while this object is alive.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try info(name)
        return UnsafeRawBufferPointer(start: base + info.dataOffset, count: info.byteCount)
    }

    // MARK: Decoding

    /// Decodes the flat (row-major) elements `elements` (default: all) of a tensor of any real dtype
    /// (floats, FP8, integers, BOOL as 0/1) to Float. `destination.count` must equal the number of
    /// elements decoded.
    public func decode(_ name: String, elements: Range<Int>? = nil, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try decodeReal(name, elements: elements, into: destination)
    }

    /// As `decode(_:elements:into:)` for Float, to Double (exact for every dtype except I64/U64
    /// values beyond 2^53).
    public func decode(_ name: String, elements: Range<Int>? = nil, into destination: UnsafeMutableBufferPointer<Double>) throws {
        try decodeReal(name, elements: elements, into: destination)
    }

    /// Decodes integer or BOOL tensors exactly to Int64. Throws for floating-point dtypes and for
    /// U64 values above Int64.max.
    public func decode(_ name: String, elements: Range<Int>? = nil, into destination: UnsafeMutableBufferPointer<Int64>) throws {
        let (info, range) = try checkedRange(name, elements, destination.count)
        guard info.dtype.isInteger else {
            throw SafeTensorsError(file: path, tensor: name, message: "dtype \(info.dtype.rawValue) is not an integer or BOOL type; read it with floats() / doubles()")
        }
        guard !range.isEmpty, let dst = destination.baseAddress else { return }
        let src = base + info.dataOffset + range.lowerBound * info.dtype.byteSize
        if let bad = SafeTensors.decodeInt64(info.dtype, from: src, to: dst, count: range.count) {
            let value = UInt64(littleEndian: src.loadUnaligned(fromByteOffset: bad * 8, as: UInt64.self))
            throw SafeTensorsError(file: path, tensor: name, message: "U64 element \(range.lowerBound + bad) = \(value) does not fit in Int64")
        }
    }

    /// All elements as Float.
    public func floats(_ name: String) throws -> [Float] { try array(name) }

    /// All elements as Double.
    public func doubles(_ name: String) throws -> [Double] { try array(name) }

    /// All elements of an integer or BOOL tensor, exactly.
    public func int64s(_ name: String) throws -> [Int64] {
        let count = try info(name).count
        return try [Int64](unsafeUninitializedCapacity: count) { buffer, initialized in
            try decode(name, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
            initialized = count
        }
    }

    private func array<T: RealDecodeTarget>(_ name: String) throws -> [T] {
        let count = try info(name).count
        return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            try decodeReal(name, elements: nil, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
            initialized = count
        }
    }

    private func decodeReal<T: RealDecodeTarget>(_ name: String, elements: Range<Int>?, into destination: UnsafeMutableBufferPointer<T>) throws {
        let (info, range) = try checkedRange(name, elements, destination.count)
        guard info.dtype.isDecodableToReal else {
            throw SafeTensorsError(file: path, tensor: name, message: "dtype \(info.dtype.rawValue) is unsupported for decoding to real numbers; use rawBytes()")
        }
        guard !range.isEmpty, let dst = destination.baseAddress else { return }
        let src = base + info.dataOffset + range.lowerBound * info.dtype.byteSize
        SafeTensors.decodeReal(info.dtype, from: src, to: dst, count: range.count)
    }

    /// Resolves and checks the element range against the tensor and the destination size.
    private func checkedRange(_ name: String, _ elements: Range<Int>?, _ destinationCount: Int) throws -> (TensorInfo, Range<Int>) {
        let info = try info(name)
        let count = info.count
        let range = elements ?? 0..<count
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw SafeTensorsError(file: path, tensor: name, message: "element range \(range) is out of bounds for shape \(info.shape) (\(count) elements)")
        }
        guard destinationCount == range.count else {
            throw SafeTensorsError(file: path, tensor: name, message: "destination holds \(destinationCount) elements but \(range.count) are being decoded (range \(range) of shape \(info.shape))")
        }
        return (info, range)
    }
}
