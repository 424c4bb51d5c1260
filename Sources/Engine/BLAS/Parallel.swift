import CWorkers

/// Work splitting for our kernels, on a persistent pool of spinning workers (Sources/CWorkers): a
/// forward pass has ~25 short parallel regions per block, too short to wake sleeping threads for each.
public enum Parallel {
    /// Threads taking part in a parallel region (MCE_THREADS overrides the number of online CPUs).
    public static let workerCount: Int = Int(mce_workers_count())

    /// Calls body(i) for i in 0..<count, concurrently. Nested calls run serially.
    @inlinable
    public static func run(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 {
            if count == 1 { body(0) }
            return
        }
        withoutActuallyEscaping(body) { fn in
            var box = fn
            withUnsafeMutablePointer(to: &box) { ctx in
                mce_workers_run(count, { ctx, i in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i))
                }, ctx)
            }
        }
    }

    /// Calls body(range) over disjoint chunks of 0..<count. `workPerItem` estimates scalar operations per
    /// item; small jobs run inline because even a spinning hand-off costs more than they do.
    @inlinable
    public static func forEachChunk(_ count: Int, workPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
        let total = count * max(1, workPerItem)
        let chunks = min(workerCount, count, max(1, total / 16_384))
        if chunks <= 1 {
            body(0..<count)
            return
        }
        run(chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }
}
