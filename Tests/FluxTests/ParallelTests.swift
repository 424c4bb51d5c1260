import BLAS
import Foundation
import Synchronization
import XCTest

/// The worker pool behind `Parallel`: every index of every region runs exactly once, and no worker is still
/// inside a region's body when `Parallel.run` returns — also when workers wake late and regions follow each
/// other closely (the pattern of a forward pass: many short regions with serial work in between).
final class ParallelTests: XCTestCase {
    final class Inside: @unchecked Sendable { let count = Atomic<Int>(0) }

    func testEveryIndexRunsOnceAndNothingOutlivesItsRegion() {
        let regions = 1_000_000
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 8)
        defer { counts.deallocate() }
        let inside = Inside()
        var bad = 0
        for r in 0..<regions {
            let n = 2 + r % 3
            for i in 0..<n { counts[i] = 0 }
            Parallel.run(n) { i in
                inside.count.add(1, ordering: .sequentiallyConsistent)
                counts[i] += 1
                if r % 7 == 0 { for _ in 0..<(50 * (i + 1)) { _ = inside.count.load(ordering: .relaxed) } }
                inside.count.subtract(1, ordering: .sequentiallyConsistent)
            }
            if inside.count.load(ordering: .sequentiallyConsistent) != 0 { bad += 1 }
            for i in 0..<n where counts[i] != 1 { bad += 1 }
            if r % 1000 == 0 { usleep(UInt32(r % 3) * 50) }   // let workers fall asleep and wake late now and then
        }
        XCTAssertEqual(bad, 0, "indices run twice or not at all, or a body still running after its region returned")
    }
}
