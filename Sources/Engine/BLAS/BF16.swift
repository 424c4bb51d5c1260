import CDNNL
#if canImport(Glibc)
import Glibc
#endif

/// The precision a command computes in. f64 is for reference checks, f32 is the reference, bf16 runs the matrix
/// products in bfloat16 through oneDNN (AVX-512 BF16 or AMX) with f32 accumulation, f32 outputs and everything
/// element-wise in f32.
public enum Precision: String, CaseIterable, Sendable {
    case f64, f32, bf16

    /// The precision Float models made from now on compute their products in (`FluxWeights` reads it when it
    /// is created; the CLI sets it from `--precision` before loading anything). f64 models ignore it.
    nonisolated(unsafe) public static var forNewModels: Precision = .f32

    /// The name written into outputs' metadata: what actually ran (bf16 falls back to f32 without native bf16).
    public var effectiveName: String { self == .bf16 && !BF16.isNative ? "f32" : rawValue }
}

/// How a Float model runs its matrix products: OpenBLAS sgemm (`.f32`) or oneDNN bf16 (`.bf16`).
public enum MatmulMode: Sendable, Equatable {
    case f32, bf16
}

/// oneDNN's bf16 matrix products and the check of whether this CPU runs them natively.
public enum BF16 {
    /// True when oneDNN is linked and dispatches bf16 products to AVX-512 BF16 (or AMX) kernels here, and
    /// `MCE_NO_BF16` is not set (it makes bf16 requests run in f32, as on a CPU without bf16).
    public static let isNative: Bool = getenv("MCE_NO_BF16") == nil && mce_dnnl_bf16_native() != 0

    /// oneDNN's version and the instruction set it uses, e.g. "oneDNN 2.6.3, avx512_core_bf16".
    public static var backend: String { String(cString: mce_dnnl_describe()) }

    /// The matmul mode a requested precision runs in here. bf16 on a CPU without native bf16 falls back to f32
    /// and says so once on stderr.
    public static func mode(for precision: Precision) -> MatmulMode {
        guard precision == .bf16 else { return .f32 }
        if isNative { return .bf16 }
        reportFallbackOnce()
        return .f32
    }

    private static let fallbackNotice: Void = {
        let why = getenv("MCE_NO_BF16") != nil ? "MCE_NO_BF16 is set" : "this CPU has no native bf16 matrix products (\(backend))"
        let line = "mce: \(why); --precision bf16 runs in f32\n"
        fputs(line, stderr)
    }()

    static func reportFallbackOnce() { _ = fallbackNotice }

    /// Round-to-nearest-even f32 → bf16 values.
    public static func round(_ x: [Float]) -> [Float] {
        var b = [UInt16](repeating: 0, count: x.count), y = [Float](repeating: 0, count: x.count)
        mce_f32_to_bf16(x, &b, x.count)
        mce_bf16_to_f32(b, &y, x.count)
        return y
    }
}

/// A constant right-hand side B [K×N] packed once into oneDNN's preferred blocked layout, in bf16.
/// `product` computes C = A·B (+ bias, + C) for any number of rows, split over the engine's workers.
public final class PackedMatrix: @unchecked Sendable {
    let handle: OpaquePointer
    public let k: Int, n: Int

    /// Whether the products run in bf16 (A converted per call) or in f32 (oneDNN's f32 kernels, for comparison).
    public let bf16: Bool

    /// Packs B read at b[k·sk + n·sn] (Wᵀ of a row-major [N, K] weight: sk = 1, sn = K).
    public init(k: Int, n: Int, b: UnsafePointer<Float>, sk: Int, sn: Int, bf16: Bool = true) throws {
        var err = [CChar](repeating: 0, count: 256)
        guard let h = mce_dnnl_mm_create(k, n, b, 0, sk, sn, bf16 ? 1 : 0, &err, err.count) else {
            throw BF16Error.unavailable(String(cString: err))
        }
        handle = h
        self.k = k; self.n = n; self.bf16 = bf16
    }

    deinit { mce_dnnl_mm_destroy(handle) }

    /// Bytes the packed matrix holds.
    public var bytes: Int { mce_dnnl_mm_bytes(handle) }

    /// C[m×n] (row stride ldc) = A[m×k] (row stride lda) · B, + bias[n] when given, + C when `accumulate`.
    public func product(
        m: Int, a: UnsafePointer<Float>, lda: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
        bias: UnsafePointer<Float>?, accumulate: Bool
    ) {
        if m == 0 { return }
        // oneDNN's brgemm kernels take dense operands only: A goes to a dense bf16 copy (it is converted anyway;
        // an f32 A must be dense already), and a strided C is computed densely and copied.
        precondition(bf16 || lda == k, "an f32 pack needs a dense A")
        let ab: UnsafeRawPointer, owned: UnsafeMutablePointer<UInt16>?
        if bf16 {
            owned = BF16Scratch.convert(rows: m, cols: k, from: a, ld: lda)
            ab = UnsafeRawPointer(owned!)
        } else {
            owned = nil
            ab = UnsafeRawPointer(a)
        }
        defer { owned?.deallocate() }
        let lda = bf16 ? k : lda, elem = bf16 ? 2 : 4
        let dense = ldc == n
        let cd = dense ? c : UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        defer { if !dense { cd.deallocate() } }
        if !dense && accumulate { copyRows(rows: m, cols: n, from: c, ld: ldc, to: cd, ld: n) }
        let workers = Parallel.workerCount
        let blocks = m >= 2 * workers && m * n * k >= 1 << 18 ? workers : 1
        Parallel.run(blocks) { i in
            let r0 = m * i / blocks, r1 = m * (i + 1) / blocks
            if r1 <= r0 { return }
            let st = mce_dnnl_mm_run(handle, r1 - r0, ab + r0 * lda * elem, lda, cd + r0 * n, n, bias, accumulate ? 1 : 0)
            precondition(st == 0, "oneDNN bf16 matmul failed (\(r1 - r0)×\(k)×\(n))")
        }
        if !dense { copyRows(rows: m, cols: n, from: cd, ld: n, to: c, ld: ldc) }
    }
}

public enum BF16Error: Error, CustomStringConvertible {
    case unavailable(String)
    public var description: String {
        switch self { case .unavailable(let m): return "bf16 matrix products unavailable: \(m)" }
    }
}

@inline(__always)
func copyRows(rows: Int, cols: Int, from: UnsafePointer<Float>, ld: Int, to: UnsafeMutablePointer<Float>, ld ldt: Int) {
    for r in 0..<rows { (to + r * ldt).update(from: from + r * ld, count: cols) }
}

enum BF16Scratch {
    /// A dense bf16 copy of a strided f32 matrix [rows × cols]; the caller deallocates it.
    static func convert(rows: Int, cols: Int, from x: UnsafePointer<Float>, ld: Int) -> UnsafeMutablePointer<UInt16> {
        let out = UnsafeMutablePointer<UInt16>.allocate(capacity: max(1, rows * cols))
        Parallel.forEachChunk(rows, workPerItem: cols) { range in
            mce_f32_to_bf16_rows(x + range.lowerBound * ld, ld, out + range.lowerBound * cols, range.count, cols)
        }
        return out
    }
}

extension Gemm {
    /// C = alpha·op(A)·op(B) + beta·C (beta 0 or 1) in bf16 with f32 accumulation, both operands converted per
    /// call (attention's products, weight gradients). Operands are converted in the orientation they are stored
    /// in (oneDNN's brgemm reads dense transposed operands itself). Runs on the calling thread when called from a
    /// worker; otherwise the rows of C are split over the workers, each converting its own block of A.
    public static func bf16(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        precondition(beta == 0 || beta == 1, "Gemm.bf16 takes beta 0 or 1")
        if m == 0 || n == 0 { return }
        // B as stored: [k × n] (sbk = n, sbn = 1) or, transposed, [n × k] (sbk = 1, sbn = k).
        let bb = transB ? BF16Scratch.convert(rows: n, cols: k, from: b, ld: ldb)
                        : BF16Scratch.convert(rows: k, cols: n, from: b, ld: ldb)
        defer { bb.deallocate() }
        let sbk = transB ? 1 : n, sbn = transB ? k : 1
        let workers = Parallel.workerCount
        let blocks = m >= 2 * workers && m * n * k >= 1 << 20 ? workers : 1
        Parallel.run(blocks) { i in
            let r0 = m * i / blocks, r1 = m * (i + 1) / blocks, mb = r1 - r0
            if mb <= 0 { return }
            // This block's rows of op(A), dense as stored: [mb × k], or transposed [k × mb].
            let ab = UnsafeMutablePointer<UInt16>.allocate(capacity: max(1, mb * k))
            defer { ab.deallocate() }
            if transA {
                for t in 0..<k { mce_f32_to_bf16(a + t * lda + r0, ab + t * mb, mb) }
            } else {
                mce_f32_to_bf16_rows(a + r0 * lda, lda, ab, mb, k)
            }
            let sam = transA ? 1 : k, sak = transA ? mb : 1
            let dense = ldc == n
            let cd = dense ? c + r0 * n : UnsafeMutablePointer<Float>.allocate(capacity: mb * n)
            defer { if !dense { cd.deallocate() } }
            if !dense && beta == 1 { copyRows(rows: mb, cols: n, from: c + r0 * ldc, ld: ldc, to: cd, ld: n) }
            let st = mce_dnnl_gemm(mb, n, k, alpha, ab, sam, sak, bb, sbk, sbn, cd, n, 1, beta == 1 ? 1 : 0)
            precondition(st == 0, "oneDNN bf16 gemm failed (\(mb)×\(k)×\(n))")
            if !dense { copyRows(rows: mb, cols: n, from: cd, ld: n, to: c + r0 * ldc, ld: ldc) }
        }
    }

    /// Runs the product through `bf16` when `mode` asks for it and T is Float; false (nothing done) otherwise.
    @usableFromInline
    static func ranInBF16<T: Scalar>(
        mode: MatmulMode, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: T, a: UnsafePointer<T>, lda: Int,
        b: UnsafePointer<T>, ldb: Int, beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) -> Bool {
        guard mode == .bf16, T.self == Float.self else { return false }
        bf16(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha as! Float,
             a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), lda: lda,
             b: UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), ldb: ldb, beta: beta as! Float,
             c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
        return true
    }

    /// `run` in the given mode: bf16 products for Float when `mode` is .bf16, BLAS otherwise.
    @inlinable
    public static func run<T: Scalar>(
        mode: MatmulMode, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: T = 1, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T = 0, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        if ranInBF16(mode: mode, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                     b: b, ldb: ldb, beta: beta, c: c, ldc: ldc) { return }
        run(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    }

    /// One single-threaded product for code that already runs on a worker (attention's per-head products).
    @inlinable
    public static func single<T: Scalar>(
        mode: MatmulMode, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: T = 1, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T = 0, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        // Inside a worker, Parallel.run is serial, so `bf16` stays on this thread.
        if ranInBF16(mode: mode, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                     b: b, ldb: ldb, beta: beta, c: c, ldc: ldc) { return }
        T.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
               beta: beta, c: c, ldc: ldc)
    }
}
