import BLAS
import Flux

/// A mask site of an erasure, the one key of every per-site value — logits, draws, masks, gradients, fills:
/// a unit group of the transformer (`MaskSite`) or the feed-forward units of one text-encoder layer
/// (`TextEncoderSite`). A name is parsed once, by `init(name:)`, and written as `description` (the diffusers or
/// state-dict module name) by the files that store sites.
public enum Site: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    case transformer(MaskSite)
    case textEncoder(layer: Int)

    /// `transformer_blocks.0.ff`, `single_transformer_blocks.2.attn`, `text_encoder.encoder.layer.3.intermediate`, …
    public init?(name: String) {
        if let l = TextEncoderSite.layer(of: name) {
            self = .textEncoder(layer: l)
        } else if let s = MaskSite(name: name) {
            self = .transformer(s)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .transformer(let s): return s.description
        case .textEncoder(let l): return TextEncoderSite.name(layer: l)
        }
    }

    public var transformerSite: MaskSite? { if case .transformer(let s) = self { return s } else { return nil } }
    public var textLayer: Int? { if case .textEncoder(let l) = self { return l } else { return nil } }

    /// Units of the site in a model with `config` and a text encoder with `textUnits` feed-forward units per layer.
    public func width(_ config: FluxConfig, textUnits: Int) -> Int {
        switch self {
        case .transformer(let s): return s.width(config)
        case .textEncoder: return textUnits
        }
    }

    /// Transformer sites first (by kind, then block), then text-encoder layers in order: the order of reports,
    /// of `top-global` ties and of the mask file's checks.
    public static func < (a: Site, b: Site) -> Bool {
        switch (a, b) {
        case (.transformer(let x), .transformer(let y)): return (x.kind.rawValue, x.block) < (y.kind.rawValue, y.block)
        case (.transformer, .textEncoder): return true
        case (.textEncoder, .transformer): return false
        case (.textEncoder(let x), .textEncoder(let y)): return x < y
        }
    }

    /// Stored as its name.
    public init(from decoder: Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        guard let s = Site(name: name) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(name)' is not a mask site"))
        }
        self = s
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension Dictionary where Key == Site {
    /// The transformer sites' values, as the engine takes them.
    public var transformerSites: [MaskSite: Value] {
        var out: [MaskSite: Value] = [:]
        for (k, v) in self { if let s = k.transformerSite { out[s] = v } }
        return out
    }

    /// The text-encoder layers' values, as the text encoder takes them.
    public var textLayers: [Int: Value] {
        var out: [Int: Value] = [:]
        for (k, v) in self { if let l = k.textLayer { out[l] = v } }
        return out
    }
}
