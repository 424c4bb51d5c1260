import Foundation

/// The architecture of a FLUX.1 transformer, with the field names of diffusers' `config.json`.
public struct FluxConfig: Codable, Equatable, Sendable {
    public var patchSize: Int = 1
    public var inChannels: Int
    public var outChannels: Int?
    public var numLayers: Int
    public var numSingleLayers: Int
    public var attentionHeadDim: Int
    public var numAttentionHeads: Int
    public var jointAttentionDim: Int
    public var pooledProjectionDim: Int
    public var guidanceEmbeds: Bool
    public var axesDimsRope: [Int]

    enum CodingKeys: String, CodingKey {
        case patchSize = "patch_size"
        case inChannels = "in_channels"
        case outChannels = "out_channels"
        case numLayers = "num_layers"
        case numSingleLayers = "num_single_layers"
        case attentionHeadDim = "attention_head_dim"
        case numAttentionHeads = "num_attention_heads"
        case jointAttentionDim = "joint_attention_dim"
        case pooledProjectionDim = "pooled_projection_dim"
        case guidanceEmbeds = "guidance_embeds"
        case axesDimsRope = "axes_dims_rope"
    }

    public init(
        inChannels: Int, outChannels: Int? = nil, numLayers: Int, numSingleLayers: Int,
        attentionHeadDim: Int, numAttentionHeads: Int, jointAttentionDim: Int,
        pooledProjectionDim: Int, guidanceEmbeds: Bool, axesDimsRope: [Int]
    ) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.numLayers = numLayers
        self.numSingleLayers = numSingleLayers
        self.attentionHeadDim = attentionHeadDim
        self.numAttentionHeads = numAttentionHeads
        self.jointAttentionDim = jointAttentionDim
        self.pooledProjectionDim = pooledProjectionDim
        self.guidanceEmbeds = guidanceEmbeds
        self.axesDimsRope = axesDimsRope
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // diffusers defaults (FluxTransformer2DModel.__init__) for keys a config may omit.
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 1
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? 64
        outChannels = try c.decodeIfPresent(Int.self, forKey: .outChannels)
        numLayers = try c.decodeIfPresent(Int.self, forKey: .numLayers) ?? 19
        numSingleLayers = try c.decodeIfPresent(Int.self, forKey: .numSingleLayers) ?? 38
        attentionHeadDim = try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim) ?? 128
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 24
        jointAttentionDim = try c.decodeIfPresent(Int.self, forKey: .jointAttentionDim) ?? 4096
        pooledProjectionDim = try c.decodeIfPresent(Int.self, forKey: .pooledProjectionDim) ?? 768
        guidanceEmbeds = try c.decodeIfPresent(Bool.self, forKey: .guidanceEmbeds) ?? false
        axesDimsRope = try c.decodeIfPresent([Int].self, forKey: .axesDimsRope) ?? [16, 56, 56]
    }

    /// Model width (`inner_dim` in diffusers).
    public var dim: Int { numAttentionHeads * attentionHeadDim }
    /// Feed-forward hidden width; FLUX hard-codes mlp_ratio 4.
    public var mlpDim: Int { 4 * dim }
    public var outputChannels: Int { outChannels ?? inChannels }
    /// Width of the sinusoidal time/guidance projection (fixed in FLUX).
    public static let timeProjDim = 256
    public static let ropeTheta = 10000.0

    /// Checks the invariants the forward pass relies on; the message names the offending field.
    public func validate() throws {
        func fail(_ m: String) -> FluxError { .invalidConfig(m) }
        if patchSize != 1 { throw fail("patch_size must be 1 (FLUX packs 2×2 patches outside the model), got \(patchSize)") }
        for (n, v) in [("in_channels", inChannels), ("num_attention_heads", numAttentionHeads),
                       ("attention_head_dim", attentionHeadDim), ("joint_attention_dim", jointAttentionDim),
                       ("pooled_projection_dim", pooledProjectionDim), ("out_channels", outputChannels)] where v <= 0 {
            throw fail("\(n) must be positive, got \(v)")
        }
        if numLayers < 0 || numSingleLayers < 0 { throw fail("num_layers and num_single_layers must be ≥ 0") }
        if axesDimsRope.isEmpty || axesDimsRope.contains(where: { $0 <= 0 || $0 % 2 != 0 }) {
            throw fail("axes_dims_rope must be positive even numbers, got \(axesDimsRope)")
        }
        if axesDimsRope.reduce(0, +) != attentionHeadDim {
            throw fail("axes_dims_rope \(axesDimsRope) must sum to attention_head_dim \(attentionHeadDim)")
        }
    }

    public static func load(json url: URL) throws -> FluxConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FluxError.io("\(url.path): cannot read config: \(error.localizedDescription)")
        }
        return try decode(json: data, source: url.path)
    }

    public static func decode(json data: Data, source: String) throws -> FluxConfig {
        do {
            let c = try JSONDecoder().decode(FluxConfig.self, from: data)
            try c.validate()
            return c
        } catch let e as FluxError {
            throw FluxError.invalidConfig("\(source): \(e)")
        } catch {
            throw FluxError.invalidConfig("\(source): not a valid FLUX config.json (\(error))")
        }
    }

    public func jsonData(pretty: Bool = true) -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return try! enc.encode(self)
    }

    // MARK: presets

    /// diffusers' unit-test transformer (tests/models/transformers/test_models_transformer_flux.py).
    public static let diffusersTest = FluxConfig(
        inChannels: 4, numLayers: 1, numSingleLayers: 1, attentionHeadDim: 16, numAttentionHeads: 2,
        jointAttentionDim: 32, pooledProjectionDim: 32, guidanceEmbeds: false, axesDimsRope: [4, 4, 8])
    /// Benchmark configs: 64 and 256 image tokens respectively.
    public static let small = FluxConfig(
        inChannels: 48, numLayers: 2, numSingleLayers: 4, attentionHeadDim: 64, numAttentionHeads: 4,
        jointAttentionDim: 384, pooledProjectionDim: 384, guidanceEmbeds: false, axesDimsRope: [8, 28, 28])
    public static let medium = FluxConfig(
        inChannels: 64, numLayers: 4, numSingleLayers: 8, attentionHeadDim: 64, numAttentionHeads: 8,
        jointAttentionDim: 512, pooledProjectionDim: 512, guidanceEmbeds: false, axesDimsRope: [8, 28, 28])
    public static let flux1Dev = FluxConfig(
        inChannels: 64, numLayers: 19, numSingleLayers: 38, attentionHeadDim: 128, numAttentionHeads: 24,
        jointAttentionDim: 4096, pooledProjectionDim: 768, guidanceEmbeds: true, axesDimsRope: [16, 56, 56])
    public static let flux1Schnell: FluxConfig = {
        var c = flux1Dev
        c.guidanceEmbeds = false
        return c
    }()

    public static let presets: [String: FluxConfig] = [
        "diffusers-test": diffusersTest, "small": small, "medium": medium,
        "flux1-dev": flux1Dev, "flux1-schnell": flux1Schnell,
    ]

    /// Number of parameters (all Linears have biases; 4 QK-norm vectors per double block, 2 per single).
    public var parameterCount: Int {
        let d = dim, m = mlpDim, hd = attentionHeadDim
        func lin(_ i: Int, _ o: Int) -> Int { i * o + o }
        var n = lin(inChannels, d) + lin(jointAttentionDim, d)
        n += lin(Self.timeProjDim, d) + lin(d, d)
        if guidanceEmbeds { n += lin(Self.timeProjDim, d) + lin(d, d) }
        n += lin(pooledProjectionDim, d) + lin(d, d)
        let double = 2 * lin(d, 6 * d) + 6 * lin(d, d) + 4 * hd + 2 * lin(d, d) + 2 * (lin(d, m) + lin(m, d))
        let single = lin(d, 3 * d) + 3 * lin(d, d) + 2 * hd + lin(d, m) + lin(d + m, d)
        n += numLayers * double + numSingleLayers * single
        n += lin(d, 2 * d) + lin(d, outputChannels)
        return n
    }
}

public enum FluxError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case missingWeight(String)
    case badShape(String)
    case badInput(String)
    case io(String)

    public var description: String {
        switch self {
        case .invalidConfig(let m): return "invalid config: \(m)"
        case .missingWeight(let m): return "missing weight: \(m)"
        case .badShape(let m): return "shape mismatch: \(m)"
        case .badInput(let m): return "bad input: \(m)"
        case .io(let m): return m
        }
    }
}
