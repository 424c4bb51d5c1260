import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Work splitting for our own (non-BLAS) kernels. Rows are split into at most `workerCount` contiguous
/// chunks; tiny jobs run inline because a thread hop costs more than they do.
public enum Parallel {
    public static let workerCount: Int = {
        if let s = getenv("MCE_THREADS"), let n = Int(String(cString: s)), n > 0 { return n }
        return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }()

    /// Calls body(range) over disjoint chunks of 0..<count. `work` is an estimate of scalar operations per
    /// item, used to decide whether splitting is worth it.
    @inlinable
    public static func forEachChunk(_ count: Int, workPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
        let total = count * max(1, workPerItem)
        let chunks = min(workerCount, count, max(1, total / 32_768))
        if chunks <= 1 {
            body(0..<count)
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }
}
