// Release builds compile the Swift kernels for AVX2 + FMA (Package.swift: `-target-cpu haswell` on x86-64),
// so an older CPU would die of an illegal instruction somewhere in the first element-wise loop. This
// constructor runs before any Swift code and is itself compiled for the baseline, so such a machine gets one
// clear line instead (and a debug build, which has no such flag, runs anywhere).
#if defined(MCE_REQUIRE_AVX2) && defined(__x86_64__)
#include <stdio.h>
#include <stdlib.h>

__attribute__((constructor)) static void mce_require_avx2(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fputs("Error: this release build of mce needs an x86-64 CPU with AVX2 and FMA (Intel Haswell / AMD Zen or "
              "later). Build it for this CPU with `swift build -c release -Xswiftc -target-cpu -Xswiftc native`, "
              "or use a debug build.\n", stderr);
        exit(1);
    }
}
#endif
