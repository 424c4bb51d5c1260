import BLAS
import Foundation
import World

/// The detector's shape: a stack of 3×3 convolutions (each followed by ReLU) and 2×2 max-pools on a
/// square RGB image, flattened into one fully connected layer with ReLU (the penultimate features), and
/// three linear heads read off those features: object class, object colour, background colour.
public struct DetectorConfig: Codable, Equatable, Sendable {
    /// Input width = height (divisible by 2 for every pool).
    public var imageSize: Int
    /// The convolutional stack in order: a positive entry is a 3×3 convolution (padding 1) to that many
    /// channels followed by ReLU; 0 is a 2×2 max-pool.
    public var layers: [Int]
    /// Groups of the group normalisation between each convolution and its ReLU (0: none, and the
    /// convolutions have biases instead).
    public var normGroups: Int
    /// Width of the penultimate (feature) layer.
    public var hidden: Int
    public var classCount: Int
    public var colorCount: Int

    public init(imageSize: Int = 32, layers: [Int], normGroups: Int = 0, hidden: Int, classCount: Int = Vocabulary.classCount,
                colorCount: Int = Vocabulary.colors.count) {
        self.imageSize = imageSize
        self.layers = layers
        self.normGroups = normGroups
        self.hidden = hidden
        self.classCount = classCount
        self.colorCount = colorCount
    }

    /// The committed detector's shape: 32² → conv32 pool → conv64 conv64 pool → conv128 pool →
    /// 128·4·4 → 128 features → heads 20 / 12 / 12, group norm (8 groups) after every convolution.
    public static let standard = DetectorConfig(layers: [32, 0, 64, 64, 0, 128, 0], normGroups: 8, hidden: 128)

    /// Sizes of the three heads (class, object colour, background colour), in the order of the logits.
    public var headSizes: [Int] { [classCount, colorCount, colorCount] }
    public var headOutputs: Int { headSizes.reduce(0, +) }

    /// "c32 c32 p c64 …" for logs.
    public var summary: String {
        layers.map { $0 > 0 ? "conv\($0)" : "pool" }.joined(separator: " ") + (normGroups > 0 ? " (group norm, \(normGroups) groups)" : "") + " → fc\(hidden) → \(headSizes.map(String.init).joined(separator: "/"))"
    }

    public func validate() throws {
        guard imageSize > 0, hidden > 0, classCount > 1, colorCount > 1, normGroups >= 0 else {
            throw DetectorError.invalidConfig("sizes must be positive (image \(imageSize), hidden \(hidden))")
        }
        var s = imageSize
        for l in layers {
            if l < 0 { throw DetectorError.invalidConfig("negative layer width \(l)") }
            if l > 0 && normGroups > 0 && l % normGroups != 0 {
                throw DetectorError.invalidConfig("\(l) channels do not split into \(normGroups) groups")
            }
            if l == 0 {
                guard s % 2 == 0 else { throw DetectorError.invalidConfig("a 2×2 pool needs an even size, got \(s)") }
                s /= 2
            }
        }
    }
}

public enum DetectorError: Error, CustomStringConvertible {
    case invalidConfig(String)
    case badFile(path: String, reason: String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .invalidConfig(let s): return "detector configuration: \(s)"
        case .badFile(let p, let r): return "\(p): \(r)"
        case .invalidArgument(let s): return s
        }
    }
}

/// One named parameter tensor inside the flat parameter buffer.
public struct ParameterTensor: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
}

/// The network over a flat parameter buffer, generic over the compute precision (Float for use, Double
/// for gradient checks). Forward and backward run on a `DetectorWorkspace` holding one shard of a batch;
/// callers run shards on the worker pool.
public final class DetectorNet<T: Scalar>: @unchecked Sendable {
    /// One layer of the convolutional stack with its input shape.
    public struct Op: Sendable {
        public let isConv: Bool
        public let cin: Int, h: Int, w: Int
        public let cout: Int, oh: Int, ow: Int
        /// Offsets of the weight and bias in the parameter buffer (convs only; bias −1 with group norm).
        public let weight: Int, bias: Int
        /// Group norm: groups (0 = none) and the offsets of γ and β.
        public let groups: Int, gamma: Int, beta: Int
        public var inSize: Int { cin * h * w }
        public var outSize: Int { cout * oh * ow }
    }

    public let config: DetectorConfig
    public let ops: [Op]
    public let tensors: [ParameterTensor]
    public let params: Buffer<T>
    public let inputSize: Int
    public let flatSize: Int
    let fcWeight: Int, fcBias: Int, headWeight: Int, headBias: Int

    public var parameterCount: Int { params.count }

    /// Zero parameters (then `initialize(seed:)`, or fill `params`, as `SceneDetector(path:)` does).
    public init(config: DetectorConfig) throws {
        try config.validate()
        self.config = config
        var ops: [Op] = []
        var tensors: [ParameterTensor] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) -> Int {
            let t = ParameterTensor(name: name, shape: shape, offset: offset)
            tensors.append(t)
            offset += t.count
            return t.offset
        }
        var c = 3, s = config.imageSize, convIndex = 0
        for l in config.layers {
            if l > 0 {
                let g = config.normGroups
                let w = add("conv\(convIndex).weight", [l, c, 3, 3])
                let b = g > 0 ? -1 : add("conv\(convIndex).bias", [l])
                let gm = g > 0 ? add("norm\(convIndex).weight", [l]) : -1
                let bt = g > 0 ? add("norm\(convIndex).bias", [l]) : -1
                ops.append(Op(isConv: true, cin: c, h: s, w: s, cout: l, oh: s, ow: s, weight: w, bias: b, groups: g, gamma: gm, beta: bt))
                c = l
                convIndex += 1
            } else {
                ops.append(Op(isConv: false, cin: c, h: s, w: s, cout: c, oh: s / 2, ow: s / 2, weight: -1, bias: -1, groups: 0, gamma: -1, beta: -1))
                s /= 2
            }
        }
        inputSize = 3 * config.imageSize * config.imageSize
        flatSize = c * s * s
        fcWeight = add("fc.weight", [config.hidden, flatSize])
        fcBias = add("fc.bias", [config.hidden])
        headWeight = add("head.weight", [config.headOutputs, config.hidden])
        headBias = add("head.bias", [config.headOutputs])
        self.ops = ops
        self.tensors = tensors
        params = .zeros(offset)
        BLASThreads.configureOnce()
    }

    /// He-normal weights (std √(2/fan-in); the heads √(1/fan-in)), zero biases, group-norm scales 1,
    /// from `WorldRNG(seed:)`.
    public func initialize(seed: UInt64) {
        var rng = WorldRNG(seed: seed)
        params.zero()
        for t in tensors where t.name.hasPrefix("norm") && t.name.hasSuffix(".weight") {
            (params.p + t.offset).update(repeating: 1, count: t.count)
        }
        for t in tensors where t.name.hasSuffix(".weight") && !t.name.hasPrefix("norm") {
            let fanIn = t.count / t.shape[0]
            let std = ((t.name.hasPrefix("head") ? 1.0 : 2.0) / Double(fanIn)).squareRoot()
            var i = 0
            while i < t.count {
                // Box–Muller: two normals per pair of uniforms.
                let u1 = max(rng.uniform(), 1e-300), u2 = rng.uniform()
                let r = (-2 * Foundation.log(u1)).squareRoot()
                params[t.offset + i] = T(std * r * Foundation.cos(2 * Double.pi * u2))
                if i + 1 < t.count { params[t.offset + i + 1] = T(std * r * Foundation.sin(2 * Double.pi * u2)) }
                i += 2
            }
        }
    }

    public func makeWorkspace(capacity: Int) -> DetectorWorkspace<T> { DetectorWorkspace(net: self, capacity: capacity) }

    /// Runs images ws.input[0..<n] forward: activations, features (ws.hidden) and logits (ws.logits).
    public func forward(_ ws: DetectorWorkspace<T>, count n: Int) {
        precondition(n <= ws.capacity)
        let p = params.p
        for i in 0..<n {
            var x = UnsafePointer(ws.input.p + i * inputSize)
            for (k, op) in ops.enumerated() {
                let out = ws.acts[k].p + i * op.outSize
                if op.isConv {
                    if op.groups > 0 {
                        let z = ws.pre[k].p + i * op.outSize
                        Conv3x3.forward(x: x, cin: op.cin, height: op.h, width: op.w, weight: p + op.weight, bias: nil,
                                        cout: op.cout, out: z, col: ws.col.p)
                        GroupNorm.forward(z, channels: op.cout, pixels: op.oh * op.ow, groups: op.groups, gamma: p + op.gamma,
                                          beta: p + op.beta, out: out, stats: ws.normStats[k].p + i * 2 * op.groups)
                    } else {
                        Conv3x3.forward(x: x, cin: op.cin, height: op.h, width: op.w, weight: p + op.weight, bias: p + op.bias,
                                        cout: op.cout, out: out, col: ws.col.p)
                    }
                    ReLU.forward(out, count: op.outSize)
                } else {
                    MaxPool2x2.forward(x, channels: op.cin, height: op.h, width: op.w, out: out,
                                       argmax: ws.argmax[k].p + i * op.outSize)
                }
                x = UnsafePointer(out)
            }
        }
        let flat = ws.flat
        Linear.forward(x: flat, rows: n, inFeatures: flatSize, weight: p + fcWeight, bias: p + fcBias,
                       outFeatures: config.hidden, out: ws.hidden.p)
        ReLU.forward(ws.hidden.p, count: n * config.hidden)
        Linear.forward(x: ws.hidden.p, rows: n, inFeatures: config.hidden, weight: p + headWeight, bias: p + headBias,
                       outFeatures: config.headOutputs, out: ws.logits.p)
    }

    /// Backpropagates ws.dlogits[0..<n] through the activations of the last `forward`, accumulating the
    /// parameter gradient into `grad` (same layout as `params`).
    public func backward(_ ws: DetectorWorkspace<T>, count n: Int, grad: UnsafeMutablePointer<T>) {
        let p = params.p, H = config.hidden
        Linear.backward(dout: ws.dlogits.p, x: ws.hidden.p, rows: n, inFeatures: H, weight: p + headWeight,
                        outFeatures: config.headOutputs, dweight: grad + headWeight, dbias: grad + headBias, dx: ws.dhidden.p)
        ReLU.backward(ws.dhidden.p, output: ws.hidden.p, count: n * H)
        Linear.backward(dout: ws.dhidden.p, x: ws.flat, rows: n, inFeatures: flatSize, weight: p + fcWeight,
                        outFeatures: H, dweight: grad + fcWeight, dbias: grad + fcBias, dx: ops.isEmpty ? nil : ws.dflat.p)
        if ops.isEmpty { return }
        for i in 0..<n {
            var g = ws.dflat.p + i * flatSize
            var pp = 0
            for k in stride(from: ops.count - 1, through: 0, by: -1) {
                let op = ops[k]
                let x = k == 0 ? UnsafePointer(ws.input.p + i * inputSize) : UnsafePointer(ws.acts[k - 1].p + i * op.inSize)
                let dx: UnsafeMutablePointer<T>? = k == 0 ? nil : ws.pingPong[pp].p
                if op.isConv {
                    ReLU.backward(g, output: ws.acts[k].p + i * op.outSize, count: op.outSize)
                    if op.groups > 0 {
                        GroupNorm.backward(dout: g, x: ws.pre[k].p + i * op.outSize, stats: ws.normStats[k].p + i * 2 * op.groups,
                                           channels: op.cout, pixels: op.oh * op.ow, groups: op.groups, gamma: p + op.gamma,
                                           dgamma: grad + op.gamma, dbeta: grad + op.beta, dx: g)
                    }
                    Conv3x3.backward(dout: g, x: x, cin: op.cin, height: op.h, width: op.w, weight: p + op.weight, cout: op.cout,
                                     dweight: grad + op.weight, dbias: op.groups > 0 ? nil : grad + op.bias, dx: dx, col: ws.col.p)
                } else if let dx {
                    MaxPool2x2.backward(dout: g, argmax: ws.argmax[k].p + i * op.outSize, outputCount: op.outSize,
                                        dx: dx, inputCount: op.inSize)
                }
                if let dx { g = dx; pp ^= 1 }
            }
        }
    }

    /// The parameters as named tensors (for saving).
    public func tensorValues(_ t: ParameterTensor) -> [T] { Array(UnsafeBufferPointer(start: params.p + t.offset, count: t.count)) }
}

/// Scratch and activations for one shard of at most `capacity` images.
public final class DetectorWorkspace<T: Scalar>: @unchecked Sendable {
    public let capacity: Int
    /// Images [capacity, 3, S, S].
    public let input: Buffer<T>
    /// Output of each op of the stack, [capacity, outSize].
    let acts: [Buffer<T>]
    let argmax: [Buffer<Int32>]
    /// Group norm: the convolution's output before normalisation, and (μ, 1/σ) per image and group.
    let pre: [Buffer<T>]
    let normStats: [Buffer<T>]
    let col: Buffer<T>
    let pingPong: [Buffer<T>]
    /// Penultimate features [capacity, hidden] (after ReLU).
    public let hidden: Buffer<T>
    /// Logits [capacity, class + colour + colour].
    public let logits: Buffer<T>
    /// Gradient of the loss w.r.t. the logits, filled by the caller before `backward`.
    public let dlogits: Buffer<T>
    let dhidden: Buffer<T>
    let dflat: Buffer<T>

    init(net: DetectorNet<T>, capacity: Int) {
        self.capacity = capacity
        input = .zeros(capacity * net.inputSize)
        acts = net.ops.map { .zeros(capacity * $0.outSize) }
        argmax = net.ops.map { $0.isConv ? Buffer<Int32>(repeating: 0, count: 0) : Buffer<Int32>(repeating: 0, count: capacity * $0.outSize) }
        pre = net.ops.map { .zeros($0.groups > 0 ? capacity * $0.outSize : 0) }
        normStats = net.ops.map { .zeros(capacity * 2 * $0.groups) }
        col = .zeros(net.ops.filter(\.isConv).map { $0.cin * 9 * $0.h * $0.w }.max() ?? 0)
        let maxAct = net.ops.map(\.inSize).max() ?? 0
        pingPong = [.zeros(maxAct), .zeros(maxAct)]
        hidden = .zeros(capacity * net.config.hidden)
        logits = .zeros(capacity * net.config.headOutputs)
        dlogits = .zeros(capacity * net.config.headOutputs)
        dhidden = .zeros(capacity * net.config.hidden)
        dflat = .zeros(capacity * net.flatSize)
        flat = UnsafePointer(acts.last?.p ?? input.p)
    }

    /// The flattened output of the stack, [capacity, flatSize].
    let flat: UnsafePointer<T>
}
