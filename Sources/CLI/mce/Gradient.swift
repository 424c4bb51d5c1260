import ArgumentParser
import BLAS
import Flux
import Foundation
import SafeTensors

struct Gradient: ParsableCommand, PrecisionCommand {
    static let configuration = CommandConfiguration(
        abstract: "Backpropagates loss = mean((x_0 − target)²) through an N-step sampling run into mask logits and inputs.",
        discussion: """
        IN holds the `sample` inputs (hidden_states is x_T), `target` [1,L,C] and mask logits `mask.<site>` for any \
        subset of the mask sites (absent sites are unmasked); masks are sigmoid(logits). OUT gets `loss` [1], \
        `sample_final`, `grad.<site>` (w.r.t. the logits), `grad.encoder_hidden_states`, `grad.pooled_projections` \
        and `grad.hidden_states` (w.r.t. x_T). Sites: transformer_blocks.{i}.{ff,ff_context,norm1,norm1_context,attn}, \
        single_transformer_blocks.{i}.{proj_mlp,norm,attn}.
        """)

    @OptionGroup var modelOptions: ModelOptions

    @OptionGroup var sampling: SamplingOptions
    var inputs: String { sampling.inputs }
    var steps: Int { sampling.steps }
    var shift: ShiftOption? { sampling.shift }
    var output: String { sampling.output }

    func run() throws { try dispatch() }

    func run<T: Scalar>(_: T.Type) throws {
        let model = try loadModel(modelOptions, as: T.self)
        let cfg = model.config
        let inp = try ModelInputs<T>(path: inputs, config: cfg, requireTimestep: false)
        let file = inp.file
        guard file.contains("target") else { throw CLIError("\(inputs): required tensor 'target' is missing") }
        let target = try file.doubles("target")
        guard target.count == inp.hidden.count else {
            throw CLIError("\(inputs): 'target' has \(target.count) values, expected the shape of hidden_states (\(inp.hidden.count))")
        }
        // Masks: m = sigmoid(logits).
        var masks = MaskSet<T>()
        var logits: [MaskSite: [Double]] = [:]
        for name in file.names where name.hasPrefix("mask.") {
            let siteName = String(name.dropFirst(5))
            guard let site = MaskSite(name: siteName) else {
                throw CLIError("\(inputs): '\(name)' does not name a mask site (expected e.g. mask.transformer_blocks.0.ff)")
            }
            try site.validate(for: cfg)
            let l = try file.doubles(name)
            guard l.count == site.width(cfg) else {
                throw CLIError("\(inputs): '\(name)' has \(l.count) values, the site has \(site.width(cfg))")
            }
            if l.contains(where: { !$0.isFinite }) { throw CLIError("\(inputs): '\(name)' contains NaN or ±inf") }
            logits[site] = l
            masks[site] = Buffer(l.map { T(1 / (1 + Foundation.exp(-$0))) })
        }
        let (shiftKind, timeShift) = ShiftOption.resolve(shift, config: cfg, imageTokens: inp.imageTokens)
        let schedule = try FlowMatchSchedule(steps: steps, shift: timeShift)
        let sampler = CheckpointedSampler(transformer: model, cond: inp.cond, schedule: schedule, masks: masks)
        let progress = Progress(total: 2 * steps, label: "forward + replay")
        let sites = logits.keys.sorted { $0.description < $1.description }
        let result = try sampler.gradient(
            start: inp.hidden, maskGradients: sites,
            objective: CheckpointedSampler<T>.meanSquaredError(target: Buffer(target.map { T($0) })),
            progress: { done, _ in progress.update(done) })

        let hs = try file.info("hidden_states").shape
        try writeTensors(output, metadata: ["command": "gradient", "steps": "\(steps)", "shift": shiftKind.rawValue,
                                           "precision": modelOptions.precisionName, "loss": "mean((x0-target)^2)", "mask": "sigmoid(logits)"]) { w in
            w.add("loss", shape: [1], doubles: [result.loss])
            w.add("sample_final", shape: hs, doubles: result.sample.array.map { Double($0) })
            for site in sites {
                // d/dlogit = d/dm · σ(l)(1 − σ(l))
                let dm = result.grads.masks[site]!
                let g = logits[site]!.enumerated().map { k, l -> Double in
                    let s = 1 / (1 + Foundation.exp(-l))
                    return Double(dm[k]) * s * (1 - s)
                }
                w.add("grad.\(site)", shape: try file.info("mask.\(site)").shape, doubles: g)
            }
            w.add("grad.hidden_states", shape: hs, doubles: result.grads.hidden.array.map { Double($0) })
            w.add("grad.encoder_hidden_states", shape: try file.info("encoder_hidden_states").shape,
                  doubles: result.grads.encoderHiddenStates.array.map { Double($0) })
            w.add("grad.pooled_projections", shape: try file.info("pooled_projections").shape,
                  doubles: result.grads.pooledProjections.array.map { Double($0) })
        }
    }
}
