#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
import Glibc
#endif

/// BLAS runs single-threaded: `Gemm.run` and the attention kernel split work over our own workers, so
/// one scheduler owns the cores (OpenBLAS's pool spins between calls and would fight ours).
public enum BLASThreads {
    @usableFromInline static let configured: Bool = {
        #if !canImport(Accelerate)
        openblas_set_num_threads(1)
        // Keep freed activation buffers in the heap instead of unmapping them after every call: each fresh
        // mmap'd buffer would page-fault in again on the next forward pass.
        mallopt(M_MMAP_THRESHOLD, 1 << 30)
        mallopt(M_TRIM_THRESHOLD, 1 << 30)
        #endif
        return true
    }()

    @inlinable public static func configureOnce() { _ = configured }
}
