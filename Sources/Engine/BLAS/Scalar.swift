#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif
import RealModule

/// The element types the engine computes in: Float for speed, Double for tight reference checks.
/// Matrix products go to BLAS (`sgemm`/`dgemm`); everything else is our own code, generic over this.
public protocol Scalar: Real, BinaryFloatingPoint, FastMath, Sendable {
    /// C = alpha · op(A) · op(B) + beta · C, row-major. op(X) = Xᵀ when trans is true.
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int,
        b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    static var precisionName: String { get }
}

@inline(__always)
private func op(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: Scalar {
    @inlinable public static var precisionName: String { "f32" }
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(CblasRowMajor, op(transA), op(transB), Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

extension Double: Scalar {
    @inlinable public static var precisionName: String { "f64" }
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Double, a: UnsafePointer<Double>, lda: Int,
        b: UnsafePointer<Double>, ldb: Int,
        beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_dgemm(CblasRowMajor, op(transA), op(transB), Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
