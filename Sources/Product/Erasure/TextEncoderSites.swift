import Foundation
import SafeTensors
import TextEncoder

/// Mask sites on the text encoder: the feed-forward units (GELU outputs) of one MiniLM layer, named after
/// the module in the encoder's state dict, `text_encoder.encoder.layer.<l>.intermediate`. The kind `text_ff`
/// selects every layer. They act per token upstream of the transformer — before the first double block's
/// attention reads the text keys and values, which no transformer site can reach selectively — so a unit
/// that fires only on a concept word's tokens can be switched off without touching other prompts.
public enum TextEncoderSite {
    /// `--sites` kind: every layer's feed-forward units.
    public static let kind = "text_ff"
    static let prefix = "text_encoder.encoder.layer.", suffix = ".intermediate"

    public static func name(layer: Int) -> String { "\(prefix)\(layer)\(suffix)" }

    /// The layer a site name refers to, or nil when it is not a text-encoder site name.
    public static func layer(of name: String) -> Int? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let middle = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard let l = Int(middle), l >= 0, String(l) == middle else { return nil }
        return l
    }
}

public enum TextEncoderBaker {
    /// Writes a copy of the MiniLM folder `source` to `destination` with binary feed-forward masks folded
    /// into the weights: a removed unit j of layer l zeroes column j of `encoder.layer.<l>.output.dense.weight`
    /// (its only consumer), so the copy encodes exactly what the masked encoder does in any BERT runtime
    /// (transformers, sentence-transformers). Other files of the folder are copied as they are; the weights
    /// file keeps its metadata plus `mce_baked`. Written to a hidden temporary folder and renamed into place;
    /// an existing destination is replaced only when it is itself such a bake.
    ///
    /// With `fill` (mean ablation) a removed unit emits f_j instead of 0: the bias of that projection gains
    /// Σ_j f_j·(column j) over the removed units — the same encoder up to float rounding.
    public static func bake(source: String, masks: [Int: [Float]], fill: [Int: [Float]] = [:], to destination: String) throws {
        let fm = FileManager.default
        let modelPath = (source as NSString).appendingPathComponent("model.safetensors")
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: modelPath) } catch {
            throw ErasureError.io("cannot read the text encoder \(modelPath): \(error)")
        }
        var zeroed: [String: [Int]] = [:]
        var shifted: [String: (weight: String, units: [(Int, Float)])] = [:]
        for (l, m) in masks {
            if let bad = m.firstIndex(where: { $0 != 0 && $0 != 1 }) {
                throw ErasureError.badInput("text-encoder mask of layer \(l) must be binary, unit \(bad) is \(m[bad])")
            }
            let name = "encoder.layer.\(l).output.dense.weight"
            guard file.contains(name), let info = try? file.info(name), info.shape.count == 2, info.shape[1] == m.count else {
                throw ErasureError.badInput("the text encoder \(modelPath) has no [hidden, \(m.count)] tensor '\(name)' for the layer-\(l) mask")
            }
            guard info.dtype == .F32 else {
                throw ErasureError.badInput("'\(name)' in \(modelPath) is \(info.dtype.rawValue); only F32 text encoders can be baked")
            }
            let off = m.indices.filter { m[$0] == 0 }
            if !off.isEmpty { zeroed[name] = off }
            if let f = fill[l], !off.isEmpty {
                guard f.count == m.count else {
                    throw ErasureError.badInput("text-encoder fill of layer \(l) has \(f.count) values, the mask \(m.count)")
                }
                let biasName = "encoder.layer.\(l).output.dense.bias"
                guard let b = try? file.info(biasName), b.shape == [info.shape[0]], b.dtype == .F32 else {
                    throw ErasureError.badInput("the text encoder \(modelPath) has no F32 [\(info.shape[0])] bias '\(biasName)' to fold the layer-\(l) fill into")
                }
                shifted[biasName] = (weight: name, units: off.map { ($0, f[$0]) })
            }
        }
        if fm.fileExists(atPath: destination) {
            let existing = (destination as NSString).appendingPathComponent("model.safetensors")
            guard let f = try? SafeTensorsFile(path: existing), f.metadata[Baker.markerKey] != nil else {
                throw ErasureError.io("\(destination) exists and is not a baked text encoder; choose another output folder")
            }
        }
        let parent = (destination as NSString).deletingLastPathComponent
        let tmp = (parent as NSString).appendingPathComponent(".\((destination as NSString).lastPathComponent).tmp-\(getpid())")
        try? fm.removeItem(atPath: tmp)
        do {
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
            for entry in try fm.contentsOfDirectory(atPath: source) where entry != "model.safetensors" && !entry.hasPrefix(".") {
                try fm.copyItem(atPath: (source as NSString).appendingPathComponent(entry), toPath: (tmp as NSString).appendingPathComponent(entry))
            }
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw ErasureError.io("cannot write the baked text encoder next to \(destination): \(error.localizedDescription)")
        }
        let units = zeroed.values.reduce(0) { $0 + $1.count }
        var metadata = file.metadata
        metadata[Baker.markerKey] = "\(units) feed-forward units zeroed in \(zeroed.count) layers"
        var w = SafeTensorsWriter(metadata: metadata)
        // A down projection whose bias takes a fill is decoded once, for whichever of the two comes first.
        var decoded: [String: [Float]] = [:]
        func weight(_ name: String) throws -> [Float] {
            if let w = decoded[name] { return w }
            let w = try file.floats(name)
            if shifted.values.contains(where: { $0.weight == name }) { decoded[name] = w }
            return w
        }
        for info in file.tensors {
            let raw = try file.rawBytes(info.name)
            if let shift = shifted[info.name] {
                var bias = try file.floats(info.name)
                let down = try weight(shift.weight), cols = down.count / bias.count
                for r in bias.indices {
                    var s = Double(bias[r])
                    for (j, f) in shift.units { s += Double(down[r * cols + j]) * Double(f) }
                    bias[r] = Float(s)
                }
                w.add(info.name, shape: info.shape, floats: bias)
            } else if let off = zeroed[info.name] {
                var values = try weight(info.name)
                let cols = info.shape[1]
                for r in 0..<info.shape[0] { for j in off { values[r * cols + j] = 0 } }
                w.add(info.name, shape: info.shape, floats: values)
            } else {
                w.add(info.name, shape: info.shape, dtype: info.dtype, bytes: Array(raw))
            }
        }
        do {
            try w.write(to: (tmp as NSString).appendingPathComponent("model.safetensors"))
            if fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
            try fm.moveItem(atPath: tmp, toPath: destination)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw ErasureError.io("cannot write the baked text encoder \(destination): \(error.localizedDescription)")
        }
    }
}
