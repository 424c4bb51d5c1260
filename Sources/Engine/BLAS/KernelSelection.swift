#if canImport(Glibc)
import Glibc
#if !canImport(Accelerate)
import CBLAS
#endif

/// OpenBLAS picks its GEMM kernels at load time from the CPU model. Builds older than the CPU (Debian
/// bookworm's 0.3.21 on Sapphire/Emerald Rapids, say) fall back to the generic SSE3 "Prescott" kernels,
/// 2.5–3× slower than the AVX-512 ones the CPU runs fine. OpenBLAS reads `OPENBLAS_CORETYPE` only while
/// loading, so the fix is to set it and re-execute the program once, before any work is done.
public enum KernelSelection {
    /// OpenBLAS's name for the kernels it is using.
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// Kernels that mean "CPU not recognised" on x86-64.
    static let genericCores: Set<String> = ["Prescott", "Core2", "Katmai", "Coppermine", "Northwood", "Atom", "Nehalem", "Unknown"]

    /// The OpenBLAS core type matching this CPU's instruction set, from /proc/cpuinfo.
    static func bestCoreType() -> String? {
        guard let f = fopen("/proc/cpuinfo", "r") else { return nil }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap = 0
        defer { free(line) }
        while getline(&line, &cap, f) > 0 {
            let s = String(cString: line!)
            guard s.hasPrefix("flags") else { continue }
            let flags = Set(s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init))
            if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512_bf16"]) { return "Cooperlake" }
            if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl"]) { return "SkylakeX" }
            if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
            return nil
        }
        return nil
    }

    /// Re-executes the current program with OPENBLAS_CORETYPE set when OpenBLAS fell back to generic
    /// kernels on a CPU that has better ones. No-op when the user set the variable, or nothing is gained.
    public static func reexecWithTunedKernelsIfNeeded() {
        guard getenv("OPENBLAS_CORETYPE") == nil, getenv("MCE_NO_BLAS_TUNING") == nil,
              genericCores.contains(coreName), let best = bestCoreType() else { return }
        setenv("OPENBLAS_CORETYPE", best, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv only returns on failure: carry on with the generic kernels.
    }
}
#endif
