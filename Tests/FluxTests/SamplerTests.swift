import BLAS
import Flux
import SafeTensors
import TestSupport
import XCTest

final class SamplerTests: XCTestCase {
    func testScheduleMatchesReferenceValues() throws {
        // flux.md §3.2: 512² (L = 1024), N = 4, dynamic shift.
        let s = try FlowMatchSchedule(steps: 4, shift: .dynamic(imageSeqLen: 1024)).sigmas
        let expected = [1.0, 0.849235, 0.652489, 0.384945, 0]
        for (a, b) in zip(s, expected) { XCTAssertEqual(a, b, accuracy: 2e-6) }
        XCTAssertEqual(TimeShift.dynamicMu(imageSeqLen: 4096), 1.15, accuracy: 1e-12)
        XCTAssertEqual(TimeShift.dynamicMu(imageSeqLen: 256), 0.5, accuracy: 1e-12)
        XCTAssertEqual(TimeShift.dynamicMu(imageSeqLen: 16), 0.459375, accuracy: 1e-12)
        XCTAssertEqual(try FlowMatchSchedule(steps: 4, shift: .none).sigmas, [1, 0.75, 0.5, 0.25, 0])
        XCTAssertThrowsError(try FlowMatchSchedule(steps: 0, shift: .none))
    }

    func sample<T: Scalar>(_ m: String, as: T.Type) throws -> (sample: [T], sigmas: [Double]) {
        let loader = try GoldenForwardTests.loader(m)
        let model = FluxTransformer(weights: try loader.load(as: T.self))
        let file = Fixtures.golden("\(m).sample.safetensors")
        let meta = try SafeTensorsFile(path: file).metadata
        let inp = try ModelInputs<T>(path: file, config: model.config, requireTimestep: false)
        let shift: TimeShift = meta["shift"] == "dynamic" ? .dynamic(imageSeqLen: inp.imageTokens) : .none
        let schedule = try FlowMatchSchedule(steps: Int(meta["steps"]!)!, shift: shift)
        let x = try EulerSampler(transformer: model, cond: inp.cond, schedule: schedule, start: inp.hidden).run()
        return (x.array, schedule.sigmas)
    }

    func testSamplingMatchesReference() throws {
        for m in ["tiny", "dev"] {
            let file = "\(m).sample.safetensors"
            let ref = try Fixtures.doubles(file, "sample_float64_reference")
            let refSigmas = try Fixtures.doubles(file, "sigmas")
            let (x32, sig) = try sample(m, as: Float.self)
            for (a, b) in zip(sig, refSigmas) { XCTAssertEqual(a, b, accuracy: 1e-12, "\(m) sigmas") }
            XCTAssertEqual(sig.count, refSigmas.count)
            assertClose(x32, ref, relTol: 1e-5, "\(m) f32 sample vs f64 reference")
            let (x64, _) = try sample(m, as: Double.self)
            assertClose(x64, ref, relTol: 1e-10, "\(m) f64 sample vs f64 reference")
            assertClose(x32, try Fixtures.doubles(file, "sample_float32_diffusers"), relTol: 5e-5, "\(m) f32 sample vs diffusers fp32")
        }
    }

    func testPackingRoundTripAndLayout() {
        // z[b, ch, y, x] = unique value; packed feature index = ch·4 + dy·2 + dx, token = row·(w/2) + col.
        let B = 2, C = 3, h = 4, w = 6
        let z = (0..<(B * C * h * w)).map { Double($0) }
        let p = Packing.pack(z, batch: B, channels: C, height: h, width: w)
        XCTAssertEqual(Packing.unpack(p, batch: B, channels: C, height: h, width: w), z)
        // sample 1, token (row 1, col 2) = 5, channel 2, dy 1, dx 0
        let tok = 1 * 3 + 2, f = 2 * 4 + 1 * 2 + 0
        XCTAssertEqual(p[(1 * 6 + tok) * 12 + f], z[((1 * C + 2) * h + 2 * 1 + 1) * w + 2 * 2 + 0])
        XCTAssertEqual(Array(Packing.imageIds(gridHeight: 2, gridWidth: 3)[12..<15]), [0, 1, 1])
    }

    func testPackingMatchesDiffusers() throws {
        // The dev fixture holds diffusers' own packing of its unpacked latent.
        let file = "dev.io.safetensors"
        let unpacked = try Fixtures.doubles(file, "latent_unpacked")
        let packed = try Fixtures.doubles(file, "hidden_states")
        XCTAssertEqual(Packing.pack(unpacked, batch: 1, channels: 4, height: 6, width: 10), packed)
        XCTAssertEqual(try Fixtures.doubles(file, "img_ids"), Packing.imageIds(gridHeight: 3, gridWidth: 5))
    }
}
