import BLAS
import Flux
import SafeTensors
import Foundation
import TestSupport
import XCTest

/// The engine against diffusers `FluxTransformer2DModel` on the committed fixtures, in every weight layout.
final class GoldenForwardTests: XCTestCase {
    static let models = ["tiny", "dev"]
    /// Every copy of a model's weights: diffusers folder, single file, sharded folder, bf16 folder, BFL file.
    static func layouts(_ m: String) -> [String] {
        [m, "\(m)/diffusion_pytorch_model.safetensors", "\(m)_sharded", "\(m)_bf16", "\(m)_bfl.safetensors"]
    }

    /// Opens a fixture model. BFL single files carry no config and these small models' RoPE split cannot
    /// be inferred from shapes, so they get their diffusers config.json, as a user passes `--config`.
    static func loader(_ modelPath: String) throws -> FluxWeightLoader {
        guard modelPath.hasSuffix("_bfl.safetensors") else { return try FluxWeightLoader(path: Fixtures.golden(modelPath)) }
        let m = String(modelPath.dropLast("_bfl.safetensors".count))
        let config = try FluxConfig.load(json: URL(fileURLWithPath: Fixtures.golden("\(m)/config.json")))
        return try FluxWeightLoader(path: Fixtures.golden(modelPath), config: config)
    }

    func forward<T: Scalar>(_ modelPath: String, io: String, as: T.Type) throws -> [T] {
        let loader = try Self.loader(modelPath)
        let model = FluxTransformer(weights: try loader.load(as: T.self))
        let inp = try ModelInputs<T>(path: Fixtures.golden(io), config: model.config, requireTimestep: true)
        return try model.forward(hidden: inp.hidden.p, sigma: inp.timestep!, cond: inp.cond).array
    }

    func testFloat32MatchesFloat64ReferenceInEveryLayout() throws {
        for m in Self.models {
            let ref = try Fixtures.doubles("\(m).io.safetensors", "output_float64_reference")
            for path in Self.layouts(m) {
                let out = try forward(path, io: "\(m).io.safetensors", as: Float.self)
                assertClose(out, ref, relTol: 1e-5, "\(path) f32 vs f64 reference")
            }
        }
    }

    func testFloat32MatchesDiffusersFloat32() throws {
        for m in Self.models {
            let ref = try Fixtures.doubles("\(m).io.safetensors", "output_float32_diffusers")
            let out = try forward(m, io: "\(m).io.safetensors", as: Float.self)
            assertClose(out, ref, relTol: 5e-5, "\(m) f32 vs diffusers fp32")
        }
    }

    func testFloat64MatchesReferenceTightly() throws {
        for m in Self.models {
            let ref = try Fixtures.doubles("\(m).io.safetensors", "output_float64_reference")
            for path in [m, "\(m)_bfl.safetensors", "\(m)_sharded"] {
                let out = try forward(path, io: "\(m).io.safetensors", as: Double.self)
                assertClose(out, ref, relTol: 1e-10, "\(path) f64 vs f64 reference")
            }
        }
    }

    func testStreamingWeightsGiveTheSameOutput() throws {
        let loader = try FluxWeightLoader(path: Fixtures.golden("dev_bf16"))
        let resident = FluxTransformer(weights: try loader.load(as: Float.self, resident: true))
        let streaming = FluxTransformer(weights: try loader.load(as: Float.self, resident: false))
        XCTAssertTrue(streaming.weights.isStreaming)
        let inp = try ModelInputs<Float>(path: Fixtures.golden("dev.io.safetensors"), config: loader.config, requireTimestep: true)
        let a = try resident.forward(hidden: inp.hidden.p, sigma: inp.timestep!, cond: inp.cond).array
        let b = try streaming.forward(hidden: inp.hidden.p, sigma: inp.timestep!, cond: inp.cond).array
        XCTAssertEqual(a, b)
    }

    func testLayoutAndConfigDetection() throws {
        let bfl = try Self.loader("dev_bfl.safetensors")
        XCTAssertEqual(bfl.layout, .bfl)
        let folder = try FluxWeightLoader(path: Fixtures.golden("dev"))
        XCTAssertEqual(folder.layout, .diffusers)
        XCTAssertTrue(folder.config.guidanceEmbeds)
        XCTAssertEqual(folder.config.numLayers, 2)
        XCTAssertEqual(folder.config.numSingleLayers, 3)
        XCTAssertEqual(bfl.config, folder.config)
        let prefixed = try Self.loader("tiny_bfl.safetensors")
        XCTAssertEqual(prefixed.layout, .bfl)
        XCTAssertEqual(prefixed.config, try FluxWeightLoader(path: Fixtures.golden("tiny")).config)
        XCTAssertEqual(folder.config.parameterCount, folder.config.diffusersTensorNames.reduce(0) { n, name in
            n + folder.config.diffusersShape(of: name)!.reduce(1, *)
        })
        XCTAssertEqual(FluxConfig.diffusersTest.parameterCount, 68_484)   // diffusers' own count (flux.md §5.1)
        XCTAssertEqual(FluxConfig.flux1Dev.parameterCount, 11_901_408_320)
    }
}
