import BLAS
import Foundation
import SafeTensors
import World

/// What the detector sees in one scene.
public struct DetectorPrediction: Sendable, Equatable, Codable {
    /// argmax of each head: class id (0..<20), object and background colour (indices into `Vocabulary.colors`).
    public let classID: Int
    public let objColor: Int
    public let bgColor: Int
    /// Softmax of each head.
    public let classProbabilities: [Float]
    public let objColorProbabilities: [Float]
    public let bgColorProbabilities: [Float]
    /// Raw logits of the three heads, concatenated (class, object colour, background colour).
    public let logits: [Float]
}

/// The concept detector: a small CNN reading a 32×32 scene and naming its object class, object colour and
/// background colour. It is the measuring instrument of the later metrics (concept detection rate, prompt
/// alignment, and in-domain FID on its penultimate `features`).
///
/// Inputs are `RGBImage`s in [0, 1] (the network sees 2v − 1). Inference is batched and runs shards of the
/// batch on the worker pool; results do not depend on the number of workers.
public final class SceneDetector: @unchecked Sendable {
    /// The committed weights, relative to the repository root.
    public static let defaultPath = "models/detector/detector.safetensors"
    /// Value of the `format` metadata key of detector files.
    public static let formatTag = "mce-detector-1"

    public let net: DetectorNet<Float>
    /// Metadata of the file it was loaded from (training command, accuracies…), or given at creation.
    public let metadata: [String: String]

    public var config: DetectorConfig { net.config }
    /// Length of a `features` vector.
    public var featureSize: Int { config.hidden }

    /// Images per shard in inference; shards per parallel round.
    static let inferenceShardCapacity = 32
    static let shards = 8

    /// A detector with He-initialised weights.
    public convenience init(config: DetectorConfig = .standard, seed: UInt64) throws {
        let net = try DetectorNet<Float>(config: config)
        net.initialize(seed: seed)
        self.init(net: net)
    }

    /// Wraps a network (its parameters are shared, not copied).
    public init(net: DetectorNet<Float>, metadata: [String: String] = [:]) {
        self.net = net
        self.metadata = metadata
    }

    /// Loads a file written by `save(to:)`.
    public init(path: String) throws {
        let file = try SafeTensorsFile(path: path)
        guard let json = file.metadata["config"], let config = try? JSONDecoder().decode(DetectorConfig.self, from: Data(json.utf8)) else {
            throw DetectorError.badFile(path: path, reason: "not a detector file (no valid `config` in the metadata)")
        }
        net = try DetectorNet<Float>(config: config)
        metadata = file.metadata
        try Self.read(net.params.p, of: net, from: file, prefix: "")
    }

    /// Fills `dst` (laid out like `net.params`) with the tensors `prefix + name` of `file`, checking shapes.
    static func read(_ dst: UnsafeMutablePointer<Float>, of net: DetectorNet<Float>, from file: SafeTensorsFile, prefix: String) throws {
        for t in net.tensors {
            let name = prefix + t.name
            guard file.contains(name) else { throw DetectorError.badFile(path: file.path, reason: "missing tensor \(name)") }
            let info = try file.info(name)
            guard info.shape == t.shape else {
                throw DetectorError.badFile(path: file.path, reason: "tensor \(name) has shape \(info.shape), expected \(t.shape)")
            }
            try file.decode(name, into: UnsafeMutableBufferPointer(start: dst + t.offset, count: t.count))
        }
    }

    /// Adds `values` (laid out like `net.params`) as tensors `prefix + name`.
    static func add(_ values: UnsafePointer<Float>, of net: DetectorNet<Float>, to w: inout SafeTensorsWriter, prefix: String) {
        for t in net.tensors {
            w.add(prefix + t.name, shape: t.shape, floats: Array(UnsafeBufferPointer(start: values + t.offset, count: t.count)))
        }
    }

    static func baseMetadata(_ config: DetectorConfig) -> [String: String] {
        let json = try! metadataJSON(config)
        return ["format": formatTag, "config": json]
    }

    /// Writes the weights (F32) atomically, with `metadata` plus the configuration.
    public func save(to path: String, metadata extra: [String: String] = [:]) throws {
        var w = SafeTensorsWriter(metadata: extra.merging(Self.baseMetadata(config)) { _, b in b })
        Self.add(net.params.p, of: net, to: &w, prefix: "")
        try w.write(to: path)
    }

    // MARK: Inference

    /// Copies an image into the network's input layout (2v − 1).
    static func load(_ image: RGBImage, into dst: UnsafeMutablePointer<Float>, size: Int) {
        precondition(image.width == size && image.height == size, "the detector reads \(size)×\(size) images, got \(image.width)×\(image.height)")
        image.data.withUnsafeBufferPointer { src in
            for i in 0..<src.count { dst[i] = 2 * src[i] - 1 }
        }
    }

    /// Runs the network on `count` images given by `image(i)`; `consume(ws, row, i)` reads row `row` of the
    /// shard's outputs for image i. Shards run concurrently: `consume` must only write per-image state.
    func run(count: Int, image: (Int) -> RGBImage, consume: (DetectorWorkspace<Float>, Int, Int) -> Void) {
        if count == 0 { return }
        let shards = min(Self.shards, count)
        let cap = min(Self.inferenceShardCapacity, (count + shards - 1) / shards)
        let spaces = (0..<shards).map { _ in net.makeWorkspace(capacity: cap) }
        let size = config.imageSize, inSize = net.inputSize
        var start = 0
        while start < count {
            let round = min(count - start, shards * cap)
            let s0 = start
            Parallel.run(shards) { s in
                let lo = s0 + round * s / shards, hi = s0 + round * (s + 1) / shards
                if lo >= hi { return }
                let ws = spaces[s]
                for i in lo..<hi { Self.load(image(i), into: ws.input.p + (i - lo) * inSize, size: size) }
                net.forward(ws, count: hi - lo)
                for i in lo..<hi { consume(ws, i - lo, i) }
            }
            start += round
        }
    }

    /// Predictions for a batch of images.
    public func predict(_ images: [RGBImage]) -> [DetectorPrediction] {
        predict(count: images.count) { images[$0] }
    }

    /// Predictions for `count` images produced on demand (rendered inside the parallel shards).
    public func predict(count: Int, image: (Int) -> RGBImage) -> [DetectorPrediction] {
        let out = UnsafeMutableBufferPointer<DetectorPrediction?>.allocate(capacity: count)
        out.initialize(repeating: nil)
        defer { out.deallocate() }
        let heads = config.headSizes, total = config.headOutputs
        run(count: count, image: image) { ws, row, i in
            let l = Array(UnsafeBufferPointer(start: ws.logits.p + row * total, count: total))
            var probs: [[Float]] = [], arg: [Int] = []
            var off = 0
            for n in heads {
                var p = [Float](repeating: 0, count: n)
                l.withUnsafeBufferPointer { lp in
                    p.withUnsafeMutableBufferPointer { SoftmaxCrossEntropy.softmax(lp.baseAddress! + off, count: n, into: $0.baseAddress!) }
                }
                probs.append(p)
                arg.append(Self.argmax(l[off..<(off + n)]) - off)
                off += n
            }
            out[i] = DetectorPrediction(classID: arg[0], objColor: arg[1], bgColor: arg[2], classProbabilities: probs[0],
                                        objColorProbabilities: probs[1], bgColorProbabilities: probs[2], logits: l)
        }
        return out.map { $0! }
    }

    /// The penultimate features (the `fc` layer after ReLU, `featureSize` values) of each image: the
    /// embedding for in-domain FID.
    public func features(_ images: [RGBImage]) -> [[Float]] {
        let out = UnsafeMutableBufferPointer<[Float]>.allocate(capacity: images.count)
        out.initialize(repeating: [])
        defer { out.deallocate() }
        let h = config.hidden
        run(count: images.count, image: { images[$0] }) { ws, row, i in
            out[i] = Array(UnsafeBufferPointer(start: ws.hidden.p + row * h, count: h))
        }
        return Array(out)
    }

    /// Index of the largest element (the first on ties), as an index of the collection.
    static func argmax<C: Collection>(_ c: C) -> C.Index where C.Element == Float {
        var best = c.startIndex
        for i in c.indices where c[i] > c[best] { best = i }
        return best
    }
}
