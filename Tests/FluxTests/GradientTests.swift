import BLAS
import Flux
import Foundation
import SafeTensors
import TestSupport
import XCTest

/// Backprop through the whole sampler against PyTorch autograd (float64) on the committed fixtures
/// (scripts/golden/generate_gradients.py): every mask-site kind, N = 4 steps, with and without guidance.
final class GradientTests: XCTestCase {
    static func run<T: Scalar>(_ m: String, as: T.Type) throws -> (CheckpointedSampler<T>.Result, SafeTensorsFile, [MaskSite: [Double]]) {
        let loader = try FluxWeightLoader(path: Fixtures.golden(m))
        let model = FluxTransformer(weights: try loader.load(as: T.self))
        let path = Fixtures.golden("\(m).grad.safetensors")
        let file = try SafeTensorsFile(path: path)
        let inp = try ModelInputs<T>(path: path, config: model.config, requireTimestep: false)
        var masks = MaskSet<T>()
        var logits: [MaskSite: [Double]] = [:]
        for name in file.names where name.hasPrefix("mask.") {
            let site = try XCTUnwrap(MaskSite(name: String(name.dropFirst(5))), name)
            let l = try file.doubles(name)
            logits[site] = l
            masks[site] = Buffer(l.map { T(1 / (1 + Foundation.exp(-$0))) })
        }
        let shift: TimeShift = file.metadata["shift"] == "dynamic" ? .dynamic(imageSeqLen: inp.imageTokens) : .none
        let schedule = try FlowMatchSchedule(steps: Int(file.metadata["steps"]!)!, shift: shift)
        let sampler = CheckpointedSampler(transformer: model, cond: inp.cond, schedule: schedule, masks: masks)
        let target = Buffer(try file.doubles("target").map { T($0) })
        let result = try sampler.gradient(start: inp.hidden, maskGradients: Array(logits.keys),
                                          objective: CheckpointedSampler<T>.meanSquaredError(target: target))
        return (result, file, logits)
    }

    func check<T: Scalar>(_ m: String, as: T.Type, tol: Double) throws {
        let (r, file, logits) = try Self.run(m, as: T.self)
        XCTAssertEqual(r.loss, try file.doubles("ref.loss")[0], accuracy: tol * 10)
        assertClose(r.sample.array, try file.doubles("ref.sample_final"), relTol: tol, "\(m) sample")
        assertClose(r.grads.hidden.array, try file.doubles("ref.grad.hidden_states"), relTol: tol, "\(m) grad x_T")
        assertClose(r.grads.encoderHiddenStates.array, try file.doubles("ref.grad.encoder_hidden_states"), relTol: tol, "\(m) grad ehs")
        assertClose(r.grads.pooledProjections.array, try file.doubles("ref.grad.pooled_projections"), relTol: tol, "\(m) grad pooled")
        var kinds = Set<MaskSite.Kind>()
        for (site, l) in logits {
            kinds.insert(site.kind)
            let dm = r.grads.masks[site]!
            let dl = l.indices.map { k -> Double in
                let s = 1 / (1 + Foundation.exp(-l[k]))
                return Double(dm[k]) * s * (1 - s)
            }
            assertClose(dl, try file.doubles("ref.grad.\(site)"), relTol: tol, "\(m) grad \(site)")
        }
        if m == "tiny" { XCTAssertEqual(kinds, Set(MaskSite.Kind.allCases), "the tiny fixture covers every site kind") }
    }

    func testFloat64MatchesAutograd() throws {
        try check("tiny", as: Double.self, tol: 1e-8)
        try check("dev", as: Double.self, tol: 1e-8)
    }

    func testFloat32MatchesAutograd() throws {
        try check("tiny", as: Float.self, tol: 1e-3)
        try check("dev", as: Float.self, tol: 1e-3)
    }
}
