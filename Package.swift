// swift-tools-version:6.0
import PackageDescription

// Release builds: no bounds checks in the kernels, and on x86-64 AVX2 + FMA for the element-wise loops the
// compiler vectorises (GELU, norms, RoPE, AdamW — 4-wide SSE otherwise). Sources/CWorkers/cpu_check.c stops
// with a clear message on an older CPU. All of the package's Swift targets get the CPU flag (one ABI for SIMD types).
#if arch(x86_64)
let cpuFlags = ["-target-cpu", "haswell"]
#else
let cpuFlags: [String] = []
#endif
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"] + cpuFlags, .when(configuration: .release))]
let cpu: [SwiftSetting] = [.unsafeFlags(cpuFlags, .when(configuration: .release))]   // parsers keep their bounds checks

let package = Package(
    name: "mce",
    products: [
        .executable(name: "mce", targets: ["mce"]),
        .library(name: "Flux", targets: ["Flux"]),
        .library(name: "SafeTensors", targets: ["SafeTensors"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // OpenBLAS on Linux (Debian libopenblas-dev); Accelerate is used instead on Apple platforms.
        .systemLibrary(
            name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        // A persistent spinning thread pool for the kernels' short parallel loops.
        .target(name: "CWorkers", cSettings: [.unsafeFlags(["-O2"]), .define("MCE_REQUIRE_AVX2", .when(configuration: .release))]),
        .target(
            name: "BLAS",
            dependencies: [
                "CWorkers",
                .target(name: "CBLAS", condition: .when(platforms: [.linux])),
                .product(name: "RealModule", package: "swift-numerics"),
            ],
            swiftSettings: fast),
        .target(name: "SafeTensors", swiftSettings: cpu),
        .target(
            name: "Flux",
            dependencies: ["BLAS", "SafeTensors"],
            swiftSettings: fast),
        // all-MiniLM-L6-v2 (WordPiece tokenizer + 6-layer BERT) on the engine's kernels.
        .target(
            name: "TextEncoder",
            dependencies: ["BLAS", "SafeTensors"],
            swiftSettings: fast),
        .systemLibrary(
            name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]),
        // The small world: Fashion-/Animal-MNIST loaders, scenes with captions, PNG output.
        .target(
            name: "World",
            dependencies: ["BLAS", "SafeTensors", "CPNG"],
            swiftSettings: fast),
        // The concept detector: a small CNN (object class, object colour, background colour) on scenes.
        .target(
            name: "Detector",
            dependencies: ["BLAS", "SafeTensors", "World"],
            swiftSettings: fast),
        // The committed base model: prompts to conditioning, training from scratch, generation.
        .target(
            name: "BaseModel",
            dependencies: ["Flux", "TextEncoder", "World", "Detector"],
            swiftSettings: fast),
        // Concept erasure: learned hard-concrete masks, mask files, and baking masks into checkpoints.
        .target(
            name: "Erasure",
            dependencies: [
                "Flux", "SafeTensors", "BLAS", "BaseModel", "World", "Detector", "TextEncoder",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: fast),
        // The pinned evaluation protocol, its metrics and the HTML report.
        .target(
            name: "Evaluation",
            dependencies: ["Erasure", "BaseModel", "Detector", "World", "Flux", "TextEncoder"],
            swiftSettings: fast),
        // Attacks that try to bring an erased concept back (paraphrase, Ring-A-Bell).
        .target(
            name: "Attacks",
            dependencies: ["Evaluation", "Erasure", "BaseModel", "Detector", "World", "Flux", "TextEncoder", "BLAS"],
            swiftSettings: fast),
        .executableTarget(
            name: "mce",
            dependencies: [
                "Flux", "SafeTensors", "TextEncoder", "World", "BaseModel", "Detector", "Erasure", "Evaluation", "Attacks",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: cpu),
        // Fixture paths and tolerance checks shared by the test targets.
        .target(name: "TestSupport", dependencies: ["SafeTensors"], path: "Tests/TestSupport"),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors"]),
        .testTarget(name: "FluxTests", dependencies: ["Flux", "SafeTensors", "BLAS", "TestSupport"]),
        // Runs the built `mce` binary end to end on the fixtures (depends on it so it is built first).
        .testTarget(name: "TextEncoderTests", dependencies: ["TextEncoder", "SafeTensors"]),
        .testTarget(name: "WorldTests", dependencies: ["World"]),
        .testTarget(name: "DetectorTests", dependencies: ["Detector", "World", "BLAS"]),
        .testTarget(name: "BaseModelTests", dependencies: ["BaseModel", "Flux", "World", "TextEncoder"]),
        .testTarget(name: "CLITests", dependencies: ["mce", "SafeTensors"]),
        .testTarget(name: "AttacksTests", dependencies: ["Attacks", "Evaluation", "Erasure", "Detector", "BaseModel", "Flux", "World", "TextEncoder"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Erasure", "Detector", "BaseModel", "Flux", "World", "TestSupport"]),
        .testTarget(name: "ErasureTests", dependencies: ["Erasure", "Flux", "SafeTensors", "BLAS", "BaseModel", "World", "TextEncoder", "TestSupport"]),
    ],
    // Kernels hand raw buffer pointers to worker threads by design; Swift 6's strict checking of that
    // would need an unsafe wrapper at every call, so the package builds in the Swift 5 language mode.
    swiftLanguageModes: [.v5]
)
