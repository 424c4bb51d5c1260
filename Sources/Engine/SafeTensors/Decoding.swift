// Element conversion loops: safetensors bytes (little-endian, possibly unaligned) -> Float,
// Double or Int64. Loads are `loadUnaligned` because writers other than the Rust reference do not
// align tensors (e.g. BF16 at odd offsets). Nothing here allocates per element.

import Dispatch

/// A destination element type for real-valued decoding. Float and Double satisfy it with their
/// own initialisers, so the generic loops below specialise to direct conversions.
protocol RealDecodeTarget {
    init(_ value: Float)
    init(_ value: Double)
    init(_ value: Int64)
    init(_ value: UInt64)
}

extension Float: RealDecodeTarget {}
extension Double: RealDecodeTarget {}

/// Decoding of large ranges is split over threads: the work is memory-bound and, on a freshly
/// mapped file, dominated by page faults, both of which parallelise.
let parallelDecodeThreshold = 1 << 21  // elements
private let parallelChunk = 1 << 18    // elements per task

/// Runs `body(start, count)` over `0..<n`, in parallel chunks when `n` is large.
@inline(__always)
func forEachChunk(_ n: Int, _ body: (Int, Int) -> Void) {
    if n < parallelDecodeThreshold {
        body(0, n)
        return
    }
    let chunks = (n + parallelChunk - 1) / parallelChunk
    withoutActuallyEscaping(body) { body in
        // The chunks write disjoint parts of the destination, so sharing `body` across threads is
        // safe even though it captures raw pointers (hence the unchecked box).
        let shared = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let start = c * parallelChunk
            shared.value(start, min(parallelChunk, n - start))
        }
    }
}

struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

@inline(__always)
private func load<U: FixedWidthInteger>(_ p: UnsafeRawPointer, _ i: Int, as: U.Type) -> U {
    U(littleEndian: p.loadUnaligned(fromByteOffset: i &* MemoryLayout<U>.size, as: U.self))
}

/// Converts `n` elements of `dtype` starting at `src` into `dst`.
/// Preconditions (checked by callers): dtype.isDecodableToReal, both ranges valid.
func decodeReal<T: RealDecodeTarget>(_ dtype: DType, from src: UnsafeRawPointer, to dst: UnsafeMutablePointer<T>, count n: Int) {
    // Same-type copies are a plain memcpy (the common F32 -> Float and F64 -> Double cases).
    if (dtype == .F32 && T.self == Float.self) || (dtype == .F64 && T.self == Double.self) {
        forEachChunk(n) { start, count in
            UnsafeMutableRawPointer(dst + start).copyMemory(from: src + start * dtype.byteSize, byteCount: count * dtype.byteSize)
        }
        return
    }
    forEachChunk(n) { start, count in
        let s = src + start * dtype.byteSize
        let d = dst + start
        switch dtype {
        case .BOOL:
            for i in 0..<count { d[i] = T(Float(s.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0)) }
        case .U8:
            for i in 0..<count { d[i] = T(Int64(s.load(fromByteOffset: i, as: UInt8.self))) }
        case .I8:
            for i in 0..<count { d[i] = T(Int64(s.load(fromByteOffset: i, as: Int8.self))) }
        case .U16:
            for i in 0..<count { d[i] = T(Int64(load(s, i, as: UInt16.self))) }
        case .I16:
            for i in 0..<count { d[i] = T(Int64(load(s, i, as: Int16.self))) }
        case .U32:
            for i in 0..<count { d[i] = T(Int64(load(s, i, as: UInt32.self))) }
        case .I32:
            for i in 0..<count { d[i] = T(Int64(load(s, i, as: Int32.self))) }
        case .U64:
            for i in 0..<count { d[i] = T(load(s, i, as: UInt64.self)) }
        case .I64:
            for i in 0..<count { d[i] = T(load(s, i, as: Int64.self)) }
        case .F16:
            for i in 0..<count { d[i] = T(f16ToFloat(load(s, i, as: UInt16.self))) }
        case .BF16:
            for i in 0..<count { d[i] = T(bf16ToFloat(load(s, i, as: UInt16.self))) }
        case .F32:
            for i in 0..<count { d[i] = T(Float(bitPattern: load(s, i, as: UInt32.self))) }
        case .F64:
            for i in 0..<count { d[i] = T(Double(bitPattern: load(s, i, as: UInt64.self))) }
        case .F8_E4M3: decodeTable(f8E4M3Table, s, d, count)
        case .F8_E5M2: decodeTable(f8E5M2Table, s, d, count)
        case .F8_E8M0: decodeTable(f8E8M0Table, s, d, count)
        case .F8_E4M3FNUZ: decodeTable(f8E4M3FNUZTable, s, d, count)
        case .F8_E5M2FNUZ: decodeTable(f8E5M2FNUZTable, s, d, count)
        case .C64:
            preconditionFailure("C64 is rejected before decoding")
        }
    }
}

@inline(__always)
private func decodeTable<T: RealDecodeTarget>(_ table: [Float], _ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<T>, _ count: Int) {
    table.withUnsafeBufferPointer { t in
        for i in 0..<count { d[i] = T(t[Int(s.load(fromByteOffset: i, as: UInt8.self))]) }
    }
}

/// Converts `n` elements of an integer or BOOL dtype exactly. Returns the index of the first U64
/// value that does not fit in Int64, or nil on success.
func decodeInt64(_ dtype: DType, from s: UnsafeRawPointer, to d: UnsafeMutablePointer<Int64>, count: Int) -> Int? {
    switch dtype {
    case .BOOL:
        for i in 0..<count { d[i] = s.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0 }
    case .U8:
        for i in 0..<count { d[i] = Int64(s.load(fromByteOffset: i, as: UInt8.self)) }
    case .I8:
        for i in 0..<count { d[i] = Int64(s.load(fromByteOffset: i, as: Int8.self)) }
    case .U16:
        for i in 0..<count { d[i] = Int64(load(s, i, as: UInt16.self)) }
    case .I16:
        for i in 0..<count { d[i] = Int64(load(s, i, as: Int16.self)) }
    case .U32:
        for i in 0..<count { d[i] = Int64(load(s, i, as: UInt32.self)) }
    case .I32:
        for i in 0..<count { d[i] = Int64(load(s, i, as: Int32.self)) }
    case .I64:
        UnsafeMutableRawPointer(d).copyMemory(from: s, byteCount: count * 8)
    case .U64:
        for i in 0..<count {
            let v = load(s, i, as: UInt64.self)
            guard let exact = Int64(exactly: v) else { return i }
            d[i] = exact
        }
    default:
        preconditionFailure("non-integer dtype \(dtype) is rejected before decoding")
    }
    return nil
}
