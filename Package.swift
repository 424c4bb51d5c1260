// swift-tools-version:6.0
import PackageDescription

// Release builds: no bounds checks in the kernels, and on x86-64 AVX2 + FMA for the element-wise loops the
// compiler vectorises (GELU, norms, RoPE, AdamW — 4-wide SSE otherwise). Sources/Engine/CWorkers/cpu_check.c stops
// with a clear message on an older CPU. All of the package's Swift targets get the CPU flag (one ABI for SIMD types).
#if arch(x86_64)
let cpuFlags = ["-target-cpu", "haswell"]
#else
let cpuFlags: [String] = []
#endif
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"] + cpuFlags, .when(configuration: .release))]
let cpu: [SwiftSetting] = [.unsafeFlags(cpuFlags, .when(configuration: .release))]   // parsers keep their bounds checks

// Three layers, each a folder of Sources/:
//   Engine  — BLAS, SafeTensors, Flux (transformer, backward, sampler), TextEncoder (MiniLM), Imaging, Pipeline
//             (prompts → conditioning → sampled latents);
//   Product — Erasure, Evaluation, Attacks: they depend on the Engine and on the `ErasureSubject` protocol (Erasure)
//             for what they act on, never on the Testbed (`productTargets` below may not list a Testbed target,
//             and scripts/test.sh builds with SwiftPM's explicit import check, so an `import World` fails the build);
//   Testbed — World, Detector, BaseModel: the small text-to-image world, which implements the subject protocol.
// The CLI (Sources/CLI/mce) sits on top of all three.
let engine = "Sources/Engine/", testbed = "Sources/Testbed/", product = "Sources/Product/"
let testbedTargets: Set<String> = ["World", "Detector", "BaseModel"]
let productTargets: [Target] = [
    // Concept erasure: the subject protocol, learned hard-concrete masks, mask files, baking, the erase job.
    .target(
        name: "Erasure",
        dependencies: [
            "Flux", "SafeTensors", "BLAS", "TextEncoder", "Pipeline", "Imaging",
            .product(name: "Crypto", package: "swift-crypto"),
        ],
        path: product + "Erasure", swiftSettings: fast),
    // The pinned evaluation protocol's machinery: metrics (SSIM, Fréchet, accuracies), the report and its HTML.
    .target(
        name: "Evaluation",
        dependencies: ["Erasure", "Flux", "TextEncoder", "Pipeline", "Imaging", "BLAS"],
        path: product + "Evaluation", swiftSettings: fast),
    // Attacks that try to bring an erased concept back (paraphrase, Ring-A-Bell, embedding, relearning).
    .target(
        name: "Attacks",
        dependencies: ["Evaluation", "Erasure", "Flux", "TextEncoder", "Pipeline", "Imaging", "BLAS"],
        path: product + "Attacks", swiftSettings: fast),
    // Whole jobs as library calls (`mce erase` is `EraseJob`): options, runs, retries, outputs, evaluation.
    .target(
        name: "Jobs",
        dependencies: ["Erasure", "Evaluation", "Attacks", "Flux", "SafeTensors", "TextEncoder", "Pipeline", "BLAS"],
        path: product + "Jobs", swiftSettings: fast),
]
for t in productTargets {
    for d in t.dependencies {
        var name = ""
        switch d {
        case .targetItem(let n, _), .byNameItem(let n, _): name = n
        default: continue
        }
        guard testbedTargets.contains(name) else { continue }
        fatalError("Package.swift: product target \(t.name) may not depend on the testbed target \(name)")
    }
}

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
        // MARK: Engine
        // OpenBLAS on Linux (Debian libopenblas-dev); Accelerate is used instead on Apple platforms.
        .systemLibrary(
            name: "CBLAS", path: engine + "CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        // oneDNN (Debian libdnnl-dev, 2.x) behind a small C layer: bf16 matrix products with weights packed once.
        // Without it (Apple platforms) the layer reports "unavailable" and bf16 falls back to f32.
        .target(name: "CDNNL", path: engine + "CDNNL",
                cSettings: [.unsafeFlags(["-O2"])],
                linkerSettings: [.linkedLibrary("dnnl", .when(platforms: [.linux])), .linkedLibrary("gomp", .when(platforms: [.linux]))]),
        // A persistent spinning thread pool for the kernels' short parallel loops.
        .target(name: "CWorkers", path: engine + "CWorkers",
                cSettings: [.unsafeFlags(["-O2"]), .define("MCE_REQUIRE_AVX2", .when(configuration: .release))]),
        .target(
            name: "BLAS",
            dependencies: [
                "CWorkers", "CDNNL",
                .target(name: "CBLAS", condition: .when(platforms: [.linux])),
                .product(name: "RealModule", package: "swift-numerics"),
            ],
            path: engine + "BLAS", swiftSettings: fast),
        .target(name: "SafeTensors", path: engine + "SafeTensors", swiftSettings: cpu),
        .target(name: "Flux", dependencies: ["BLAS", "SafeTensors"], path: engine + "Flux", swiftSettings: fast),
        // all-MiniLM-L6-v2 (WordPiece tokenizer + 6-layer BERT) on the engine's kernels.
        .target(name: "TextEncoder", dependencies: ["BLAS", "SafeTensors"], path: engine + "TextEncoder", swiftSettings: fast),
        .systemLibrary(
            name: "CPNG", path: engine + "CPNG", pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]),
        // RGB images, PNG files, labelled grids.
        .target(name: "Imaging", dependencies: ["CPNG"], path: engine + "Imaging", swiftSettings: fast),
        // Prompts to conditioning (PromptEncoder) and to sampled latents (Generator) for a latent space.
        .target(name: "Pipeline", dependencies: ["BLAS", "Flux", "TextEncoder"], path: engine + "Pipeline", swiftSettings: fast),

        // MARK: Product
    ] + productTargets + [
        // MARK: Testbed
        // The small world: Fashion-/Animal-MNIST loaders, scenes with captions.
        .target(name: "World", dependencies: ["BLAS", "SafeTensors", "Imaging"], path: testbed + "World", swiftSettings: fast),
        // The concept detector: a small CNN (object class, object colour, background colour) on scenes.
        .target(name: "Detector", dependencies: ["BLAS", "SafeTensors", "World", "Imaging"], path: testbed + "Detector", swiftSettings: fast),
        // The committed base model: training from scratch, generation, and `WorldSubject`, the world as the
        // subject of erasure, evaluation and attacks.
        .target(
            name: "BaseModel",
            dependencies: ["Flux", "TextEncoder", "Pipeline", "Imaging", "World", "Detector", "Erasure", "Evaluation", "Attacks", "BLAS", "SafeTensors"],
            path: testbed + "BaseModel", swiftSettings: fast),

        // MARK: CLI
        .executableTarget(
            name: "mce",
            dependencies: [
                "Flux", "SafeTensors", "BLAS", "TextEncoder", "Pipeline", "Imaging", "World", "BaseModel", "Detector", "Erasure", "Evaluation", "Attacks", "Jobs",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/CLI/mce", swiftSettings: cpu),

        // MARK: Tests
        // Fixture paths and tolerance checks shared by the test targets.
        .target(name: "TestSupport", dependencies: ["SafeTensors"], path: "Tests/TestSupport"),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors"]),
        .testTarget(name: "FluxTests", dependencies: ["Flux", "SafeTensors", "BLAS", "Pipeline", "TestSupport"]),
        .testTarget(name: "TextEncoderTests", dependencies: ["TextEncoder", "SafeTensors"]),
        .testTarget(name: "WorldTests", dependencies: ["World", "Imaging", "BLAS"]),
        .testTarget(name: "DetectorTests", dependencies: ["Detector", "World", "Imaging", "BLAS"]),
        .testTarget(name: "BaseModelTests", dependencies: ["BaseModel", "Flux", "World", "TextEncoder", "Pipeline", "Evaluation", "Imaging", "BLAS"]),
        // Runs the built `mce` binary end to end on the fixtures (depends on it so it is built first).
        .testTarget(name: "CLITests", dependencies: ["mce", "SafeTensors", "BaseModel", "Evaluation", "Erasure", "Flux", "Imaging"]),
        .testTarget(name: "AttacksTests", dependencies: ["Attacks", "Evaluation", "Erasure", "Detector", "BaseModel", "Flux", "World", "TextEncoder", "Pipeline", "Imaging", "BLAS"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Erasure", "Detector", "BaseModel", "Flux", "World", "Pipeline", "Imaging", "BLAS", "TestSupport"]),
        .testTarget(name: "ErasureTests", dependencies: ["Jobs", "Erasure", "Flux", "SafeTensors", "BLAS", "BaseModel", "World", "TextEncoder", "Pipeline", "Imaging", "Evaluation", "TestSupport"]),
        // The layering rule, read from the sources: no Product file imports a Testbed module.
        .testTarget(name: "ArchitectureTests", dependencies: []),
    ],
    // Kernels hand raw buffer pointers to worker threads by design; Swift 6's strict checking of that
    // would need an unsafe wrapper at every call, so the package builds in the Swift 5 language mode.
    swiftLanguageModes: [.v5]
)
