/// Matrix products split across our own workers, each calling single-threaded BLAS.
///
/// The engine's GEMMs are small to medium (tens to hundreds of rows). OpenBLAS's own thread pool spins
/// (sched_yield) between calls and fights our element-wise workers for the two cores; splitting each
/// product into per-worker column (or row) blocks under one scheduler is faster and keeps results
/// deterministic (each output element is computed by exactly one single-threaded call).
public enum Gemm {

    /// C[m×n] = alpha·op(A)·op(B) + beta·C, row-major; op(X) = Xᵀ when trans is true.
    @inlinable
    public static func run<T: Scalar>(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: T = 1, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T = 0, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        BLASThreads.configureOnce()
        let workers = Parallel.workerCount
        let flops = 2 * m * n * k
        if workers == 1 || flops < 1 << 19 {
            T.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        if n >= 32 * workers || n >= m {
            // Column blocks (multiples of 16 for the SIMD kernels): each worker reads all of A and its rows of W.
            let blocks = workers
            let step = ((n + blocks - 1) / blocks + 15) / 16 * 16
            let count = (n + step - 1) / step
            Parallel.run(count) { i in
                let n0 = i * step, nb = min(step, n - n0)
                if nb <= 0 { return }
                let bOff = transB ? n0 * ldb : n0
                T.gemm(transA: transA, transB: transB, m: m, n: nb, k: k, alpha: alpha, a: a, lda: lda,
                       b: b + bOff, ldb: ldb, beta: beta, c: c + n0, ldc: ldc)
            }
        } else {
            let step = (m + workers - 1) / workers
            Parallel.run(workers) { i in
                let m0 = i * step, mb = min(step, m - m0)
                if mb <= 0 { return }
                let aOff = transA ? m0 : m0 * lda
                T.gemm(transA: transA, transB: transB, m: mb, n: n, k: k, alpha: alpha, a: a + aOff, lda: lda,
                       b: b, ldb: ldb, beta: beta, c: c + m0 * ldc, ldc: ldc)
            }
        }
    }
}
