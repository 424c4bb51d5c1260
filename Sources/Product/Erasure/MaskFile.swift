import BLAS
import Crypto
import Flux
import Foundation
import SafeTensors
import Pipeline
import TextEncoder

/// A learned erasure mask as a file: per mask site the final binary multipliers (1 = keep the unit,
/// 0 = remove it) and, when the file came from training, the logits they were binarised from.
///
/// On disk it is a safetensors file with 1-D F32 tensors `<site>.mask` and `<site>.logits`, where `<site>`
/// is the diffusers module name of `MaskSite` (e.g. `transformer_blocks.0.ff_context`,
/// `single_transformer_blocks.2.attn`), and string `__metadata__` (see `MaskFile.Key`). A site with no
/// `.mask` tensor is unmasked (all ones). Any tool can read it with `safetensors.safe_open`.
public struct MaskFile {
    /// Training logits per site; empty for merged files. Every site here also has a mask of the same width.
    public var logits: [Site: [Float]]
    /// Binary (exactly 0 or 1) multipliers per site.
    public var masks: [Site: [Float]]
    /// Mean ablation (`ErasureOptions.textAblation`): what a closed unit emits, per text-encoder site; absent: 0.
    public var fill: [Site: [Float]] = [:]
    public var metadata: [String: String]

    /// The `format` metadata of files `mce erase` writes.
    public static let format = "mce-masks-1"

    public enum Key {
        /// The concept the mask erases (one name).
        public static let concept = "concept"
        /// For merged files: a JSON array of the concepts of the merged files, in order.
        public static let mergedFrom = "merged_from"
        /// `modelHash` of the checkpoint the mask was learned on.
        public static let modelHash = "base_model_sha256"
    }

    public init(logits: [Site: [Float]] = [:], masks: [Site: [Float]], fill: [Site: [Float]] = [:], metadata: [String: String] = [:]) {
        self.logits = logits; self.masks = masks; self.fill = fill; self.metadata = metadata
    }

    /// The transformer sites' masks, as the engine and the checkpoint baker take them.
    public var transformerMasks: [MaskSite: [Float]] { masks.transformerSites }
    /// The text encoder's masks and fills by layer, as MiniLM and the text-encoder baker take them.
    public var textMasks: [Int: [Float]] { masks.textLayers }
    public var textFill: [Int: [Float]] { fill.textLayers }

    // MARK: reading and writing

    /// Reads and checks a mask file: every tensor is `<site>.mask` or `<site>.logits` with a valid site
    /// name, 1-D and floating point; masks are exactly 0 or 1; logits are finite and have a mask of the
    /// same width. With `config`, also checks that every site exists in that model with its width.
    public static func read(_ path: String, config: FluxConfig? = nil) throws -> MaskFile {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch let e as SafeTensorsError {
            throw ErasureError.io("cannot read mask file: \(e)")
        }
        func fail(_ tensor: String, _ message: String) -> ErasureError {
            .badInput("mask file \(path): tensor '\(tensor)': \(message)")
        }
        var result = MaskFile(masks: [:], metadata: file.metadata)
        for name in file.names {
            let isMask = name.hasSuffix(".mask"), isLogits = name.hasSuffix(".logits"), isFill = name.hasSuffix(".fill")
            guard isMask || isLogits || isFill else {
                throw fail(name, "not a mask tensor: names must be '<site>.mask', '<site>.logits' or (text-encoder sites) '<site>.fill'")
            }
            let siteName = String(name.dropLast(isMask ? ".mask".count : isFill ? ".fill".count : ".logits".count))
            guard let site = Site(name: siteName) else {
                throw fail(name, "'\(siteName)' is not a mask site (expected e.g. transformer_blocks.0.ff, transformer_blocks.0.ff_context, transformer_blocks.0.norm1, transformer_blocks.0.norm1_context, transformer_blocks.0.attn, single_transformer_blocks.0.proj_mlp, single_transformer_blocks.0.norm, single_transformer_blocks.0.attn, \(TextEncoderSite.name(layer: 0)))")
            }
            let info = try file.info(name)
            guard info.shape.count == 1, info.dtype.isFloatingPoint else {
                throw fail(name, "expected a 1-D floating-point tensor, found \(info.dtype.rawValue) \(info.shape)")
            }
            let values: [Float]
            do { values = try file.floats(name) } catch { throw ErasureError.io("mask file \(path): \(error)") }
            guard !isFill || site.textLayer != nil else { throw fail(name, "fill values are for text-encoder sites only") }
            if isMask { result.masks[site] = values } else if isFill { result.fill[site] = values } else { result.logits[site] = values }
        }
        do { try result.check(config: config) } catch ErasureError.badInput(let m) {
            throw ErasureError.badInput("mask file \(path): \(m)")
        }
        return result
    }

    /// Writes the file atomically (a temporary file in the same folder, renamed into place).
    public func write(to path: String) throws {
        try check(config: nil)
        var w = SafeTensorsWriter(metadata: metadata)
        for (site, m) in masks { w.add("\(site).mask", shape: [m.count], floats: m) }
        for (site, l) in logits { w.add("\(site).logits", shape: [l.count], floats: l) }
        for (site, f) in fill { w.add("\(site).fill", shape: [f.count], floats: f) }
        do { try w.write(to: path) } catch { throw ErasureError.io("cannot write mask file: \(error)") }
    }

    /// Checks the masks against a model: every site exists in it and has its width.
    public func validate(for config: FluxConfig) throws { try check(config: config) }

    /// Binary, finite, paired logits; with a config, sites and widths of that model.
    private func check(config: FluxConfig?) throws {
        for site in Set(masks.keys).union(logits.keys).sorted() {
            try MaskFile.checkSite("\(site)", mask: masks[site], logits: logits[site])
        }
        for (site, f) in fill.sorted(by: { $0.key < $1.key }) {
            guard site.textLayer != nil else { throw ErasureError.badInput("'\(site).fill': fill values are for text-encoder sites only") }
            guard let m = masks[site], m.count == f.count else {
                throw ErasureError.badInput("'\(site).fill' needs a '\(site).mask' of the same width (\(f.count))")
            }
            guard f.allSatisfy(\.isFinite) else { throw ErasureError.badInput("'\(site).fill' has a non-finite value") }
        }
        guard let config else { return }
        let transformer = transformerMasks
        for site in MaskFile.sorted(transformer.keys) {
            let blocks = site.kind.isSingleBlock ? config.numSingleLayers : config.numLayers
            guard site.block < blocks else {
                throw ErasureError.badInput(
                    "mask site '\(site)' does not exist in the model: it has \(blocks) \(site.kind.isSingleBlock ? "single" : "double")-stream blocks")
            }
            let want = site.width(config), got = transformer[site]!.count
            guard got == want else {
                throw ErasureError.badInput(
                    "mask '\(site)' has \(got) values but the model's site has \(want) (model width \(config.dim), \(config.numAttentionHeads) heads)")
            }
        }
    }

    /// One site: a binary mask; finite logits, with a mask of their width.
    private static func checkSite(_ site: String, mask: [Float]?, logits: [Float]?) throws {
        if let m = mask, let bad = m.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw ErasureError.badInput("mask '\(site)' must hold only 0 or 1 (binary multipliers), but unit \(bad) is \(m[bad])")
        }
        guard let l = logits else { return }
        if let bad = l.firstIndex(where: { !$0.isFinite }) {
            throw ErasureError.badInput("logits of '\(site)' must be finite, but unit \(bad) is \(l[bad])")
        }
        guard let m = mask else {
            throw ErasureError.badInput("site '\(site)' has logits but no mask ('\(site).mask' is missing)")
        }
        guard m.count == l.count else {
            throw ErasureError.badInput("site '\(site)' has \(l.count) logits but \(m.count) mask values")
        }
    }

    // MARK: combining and summarising

    /// The masks of several concepts as one: a unit is kept only if every file keeps it (the product of
    /// the masks; a site a file does not have counts as all ones there). Logits are dropped. Metadata:
    /// `merged_from` = JSON array of the files' concepts (a merged input contributes its own list), and
    /// `model_hash` when the files agree on it (files learned on different models are refused).
    public static func merge(_ files: [MaskFile]) throws -> MaskFile {
        guard !files.isEmpty else { throw ErasureError.badInput("merge needs at least one mask file") }
        var masks: [Site: [Float]] = [:], fill: [Site: [Float]] = [:]
        var concepts: [String] = []
        for (k, f) in files.enumerated() {
            try f.check(config: nil)
            let closedBefore = masks    // the product so far: 0 where an earlier file closed the unit
            try multiply(&masks, by: f.masks, file: k)
            // A closed text-encoder unit emits what the file that closes it says (0 without fill); two fills for
            // one unit must agree.
            for (site, m) in f.masks where site.textLayer != nil {
                let own = f.fill[site] ?? [Float](repeating: 0, count: m.count)
                var acc = fill[site] ?? [Float](repeating: 0, count: m.count)
                for j in m.indices where m[j] == 0 {
                    if closedBefore[site]?[j] == 0 && acc[j] != own[j] {
                        throw ErasureError.badInput("cannot merge: unit \(j) of '\(site)' is closed with different fill values (mean or zero ablation) in file \(k + 1) and an earlier file")
                    }
                    acc[j] = own[j]
                }
                fill[site] = acc
            }
            if let list = f.metadata[Key.mergedFrom], let data = list.data(using: .utf8),
               let names = try? JSONDecoder().decode([String].self, from: data) {
                concepts += names
            } else {
                concepts.append(f.metadata[Key.concept] ?? "unnamed-\(k + 1)")
            }
        }
        let list = try metadataJSON(concepts)
        var metadata = [Key.mergedFrom: list]
        if let h = try commonModelHash(files, "merge") { metadata[Key.modelHash] = h }
        return MaskFile(logits: [:], masks: masks, fill: fill.filter { $0.value.contains { $0 != 0 } }, metadata: metadata)
    }

    /// One mask from several training runs of the same erasure (other seeds): the mean of their logits per
    /// unit, binarised by `binarisation`. A unit that only one run's noise pushed below the threshold is kept,
    /// one every run pushes down is removed (stability selection). Every file must have logits for the same
    /// sites, of the same widths, learned on the same model; mean-ablation fills are averaged. Metadata: the
    /// first file's, with `seed` listing every file's seed and `binarisation` the rule used.
    public static func average(_ files: [MaskFile], binarisation: Binarisation) throws -> MaskFile {
        guard let first = files.first else { throw ErasureError.badInput("averaging needs at least one mask file") }
        func mean(_ key: KeyPath<MaskFile, [Site: [Float]]>) throws -> [Site: [Float]] {
            var sum: [Site: [Float]] = [:]
            for (k, f) in files.enumerated() {
                let l = f[keyPath: key]
                guard Set(l.keys) == Set(first[keyPath: key].keys) else {
                    throw ErasureError.badInput("cannot average: file \(k + 1) has logits for other sites than file 1 (sites: \(l.keys.map(\.description).sorted().joined(separator: ", ")))")
                }
                for (site, v) in l {
                    guard let acc = sum[site] else { sum[site] = v; continue }
                    guard acc.count == v.count else {
                        throw ErasureError.badInput("cannot average: site '\(site)' has \(acc.count) units in file 1 but \(v.count) in file \(k + 1)")
                    }
                    sum[site] = zip(acc, v).map { $0 + $1 }
                }
            }
            return sum.mapValues { $0.map { $0 / Float(files.count) } }
        }
        for (k, f) in files.enumerated() {
            try f.check(config: nil)
            guard !f.logits.isEmpty else {
                throw ErasureError.badInput("cannot average: file \(k + 1) has no logits (a merged or hand-made mask); average the training runs' files")
            }
        }
        _ = try commonModelHash(files, "average")
        let logits = try mean(\.logits)
        var metadata = first.metadata
        metadata["seed"] = files.map { $0.metadata["seed"] ?? "?" }.joined(separator: ",")
        metadata["binarisation"] = binarisation.description
        metadata["averaged_runs"] = "\(files.count)"
        var result = MaskFile(logits: logits, masks: binarisation.apply(logits), metadata: metadata)
        let fills = files.map(\.fill)
        if fills.contains(where: { !$0.isEmpty }) {
            let textSites = Set(logits.keys.filter { $0.textLayer != nil })
            guard fills.allSatisfy({ Set($0.keys) == textSites }) else {
                throw ErasureError.badInput("cannot average: some files ablate text-encoder units to their mean (fill values) and others to zero")
            }
            result.fill = try mean(\.fill)
        }
        return result
    }

    /// The model hash the files record (nil if none does); files learned on different models are refused.
    private static func commonModelHash(_ files: [MaskFile], _ verb: String) throws -> String? {
        let hashes = Set(files.compactMap { $0.metadata[Key.modelHash] })
        guard hashes.count <= 1 else {
            throw ErasureError.badInput("cannot \(verb) masks learned on different models (model_hash values: \(hashes.sorted().joined(separator: ", ")))")
        }
        return hashes.first
    }

    /// acc[site] ← acc[site] ⊙ m for every site of `masks` (a site acc lacks is taken as it is); widths must agree.
    private static func multiply(_ acc: inout [Site: [Float]], by masks: [Site: [Float]], file k: Int) throws {
        for (site, m) in masks {
            guard let a = acc[site] else { acc[site] = m; continue }
            guard a.count == m.count else {
                throw ErasureError.badInput("cannot merge: site '\(site)' has \(a.count) units in an earlier file but \(m.count) in file \(k + 1)")
            }
            acc[site] = zip(a, m).map { $0 * $1 }
        }
    }

    /// Units removed per transformer site, by kind (MaskSite.Kind order) then block: what a baked transformer records.
    public var transformerMaskedCounts: [(site: MaskSite, masked: Int, total: Int)] {
        let transformer = transformerMasks
        return MaskFile.sorted(transformer.keys).map { site in
            let m = transformer[site]!
            return (site, m.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }, m.count)
        }
    }

    /// Units removed per site: transformer sites by kind (MaskSite.Kind order) then block, then text-encoder
    /// layers; by name, as reports count them.
    public var allMaskedCounts: [(site: String, masked: Int, total: Int)] {
        let transformer = MaskFile.sorted(transformerMasks.keys).map(Site.transformer)
        let text = masks.keys.filter { $0.textLayer != nil }.sorted()
        return (transformer + text).map { site in
            let m = masks[site]!
            return (site.description, m.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }, m.count)
        }
    }

    /// The text encoder these masks erase: a fresh copy of `base`'s MiniLM with the text-encoder masks
    /// applied to every encoding, or nil when the file has none (the erased model reads `base` as it is).
    public func textEncoder(base: PromptEncoder) throws -> PromptEncoder? {
        guard !textMasks.isEmpty else { return nil }
        let m = try MiniLM(directory: base.miniLM.directory)
        do { try m.setFeedForwardMasks(textMasks, fill: textFill) } catch { throw ErasureError.badInput("mask file: \(error)") }
        return PromptEncoder(miniLM: m, paddedLength: base.paddedLength)
    }

    /// The masks as engine buffers (pass to `FluxTransformer.forward` / `EulerSampler`).
    public func maskSet() -> MaskSet<Float> { maskSet(as: Float.self) }

    public func maskSet<T: Scalar>(as: T.Type) -> MaskSet<T> {
        var set = MaskSet<T>()
        for (site, m) in transformerMasks { set[site] = Buffer(m.map { T(Double($0)) }) }
        return set
    }

    /// Sites in a stable order: kind (declaration order), then block.
    static func sorted<S: Sequence>(_ sites: S) -> [MaskSite] where S.Element == MaskSite {
        let order = Dictionary(uniqueKeysWithValues: MaskSite.Kind.allCases.enumerated().map { ($1, $0) })
        return sites.sorted { a, b in
            order[a.kind]! != order[b.kind]! ? order[a.kind]! < order[b.kind]! : a.block < b.block
        }
    }
}

// MARK: - model identity

/// SHA-256 (hex) of a model's weights, to record which checkpoint a mask belongs to. For a folder: its
/// `config.json` (when present) and then every `*.safetensors` in it, sorted by name (hidden files, such as
/// half-written temporaries, are skipped); for a file: that file. Files are streamed, so any size works.
public func modelHash(_ path: String) throws -> String {
    try modelHash(path, chunkSize: 8 << 20)
}

func modelHash(_ path: String, chunkSize: Int) throws -> String {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
        throw ErasureError.io("cannot hash model \(path): no such file or folder")
    }
    var files: [String] = []
    if isDir.boolValue {
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: path) } catch {
            throw ErasureError.io("cannot hash model \(path): cannot list the folder: \(error.localizedDescription)")
        }
        let weights = entries.filter { !$0.hasPrefix(".") && $0.hasSuffix(".safetensors") }.sorted()
        guard !weights.isEmpty else { throw ErasureError.io("cannot hash model \(path): the folder holds no .safetensors file") }
        files = (entries.contains("config.json") ? ["config.json"] : []) + weights
        files = files.map { (path as NSString).appendingPathComponent($0) }
    } else {
        files = [path]
    }
    var hasher = SHA256()
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
    defer { buffer.deallocate() }
    for file in files {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ErasureError.io("cannot hash \(file): cannot open it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while true {
            let n = read(fd, buffer.baseAddress!, chunkSize)
            if n < 0 {
                if errno == EINTR { continue }
                throw ErasureError.io("cannot hash \(file): read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}
