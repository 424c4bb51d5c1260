/// A flat, owned, contiguous array of scalars with a stable address (llm.c style): kernels take its
/// pointer and explicit dimensions. Reference semantics; freed on deinit.
public final class Buffer<T>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<T>
    public let count: Int


    /// Uninitialised storage for `count` elements (only for trivial types such as Float/Double).
    @inlinable public init(uninitialized count: Int) {
        self.count = count
        p = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
    }

    @inlinable public init(repeating v: T, count: Int) {
        self.count = count
        p = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        p.initialize(repeating: v, count: count)
    }

    public init(_ a: [T]) {
        count = a.count
        p = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        a.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { p.initialize(from: base, count: count) }
        }
    }

    deinit { p.deallocate() }

    @inlinable public var array: [T] { Array(UnsafeBufferPointer(start: p, count: count)) }

    public var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: p, count: count) }

    @inlinable public subscript(i: Int) -> T {
        get { p[i] }
        set { p[i] = newValue }
    }
}

extension Buffer where T: Numeric {
    @inlinable public static func zeros(_ count: Int) -> Buffer<T> { Buffer(repeating: 0, count: count) }

    @inlinable public func zero() { p.update(repeating: 0, count: count) }

    @inlinable public func copy() -> Buffer<T> {
        let b = Buffer<T>(uninitialized: count)
        b.p.initialize(from: p, count: count)
        return b
    }
}
