#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
import Glibc
#endif

/// Control over BLAS's own threads. Our attention kernel runs many tiny GEMMs, one per (sample, head), on
/// our own workers; BLAS must then run each call on the calling thread instead of waking its pool.
public enum BLASThreads {
    private static let lock = NSLockLike()

    public static func withSingleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        #if canImport(Accelerate)
        return try body()
        #else
        lock.lock()
        defer { lock.unlock() }
        let previous = openblas_get_num_threads()
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(previous) }
        return try body()
        #endif
    }
}

/// A minimal mutex (pthread) so the BLAS module needs no Foundation.
final class NSLockLike: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    func lock() { pthread_mutex_lock(&m) }
    func unlock() { pthread_mutex_unlock(&m) }
}
