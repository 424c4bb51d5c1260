import Flux
import Foundation
import SafeTensors

/// Folds binary masks into a checkpoint, so that the unmasked model computes exactly what the original
/// computes with the masks applied, in any runtime that loads the checkpoint (diffusers, ComfyUI, this
/// engine). Every mask site is a multiplier on a Linear's output or on a Linear's input, and a 0 multiplier
/// is the same as zeroing the matching weight row (and bias entry) or weight column:
///
/// | site | masked unit j (head h) | zeroed (diffusers names) |
/// |---|---|---|
/// | `ff`, `ff_context` | hidden unit j after GELU | column j of `ff.net.2.weight` / `ff_context.net.2.weight` |
/// | `norm1`, `norm1_context`, single `norm` | modulation output j | row j of `<..>.linear.weight`, entry j of its bias |
/// | `proj_mlp` | MLP unit j after GELU | column dim + j of the single block's `proj_out.weight` |
/// | double `attn` | head h of the joint attention output | columns h·D..<(h+1)·D of `attn.to_out.0.weight` and `attn.to_add_out.weight` |
/// | single `attn` | head h of the attention output | columns h·D..<(h+1)·D of the single block's `proj_out.weight` |
/// | `attn.add_q_proj`, `attn.add_k_proj`, `attn.add_v_proj` | output channel j | row j of that projection's weight, entry j of its bias |
///
/// (A 0 modulation output means shift 0, scale 0 → ×1, gate 0: the same in the forward with the mask as with
/// the zeroed row. A text q/k/v mask multiplies the projection's output before the q/k RMSNorm, so a zeroed
/// row gives the same input to the norm. BFL checkpoints store each of these tensors whole under another name — `img_mlp.2`,
/// `txt_mod.lin`, `img_attn.proj`, `linear2`, `modulation.lin`, … — with the same row order, so the same
/// rows/columns are zeroed there; `CheckpointLayout` gives the names.)
///
/// The output keeps the input's form: a diffusers folder (single file or sharded with its index; every other
/// non-weight file such as `config.json` is copied), a diffusers single file, or a BFL single file (with a
/// ComfyUI prefix if it had one). Tensor names, dtypes, shapes and order-independent contents are preserved;
/// untouched tensors are copied byte for byte and zeroed ones stay in their dtype (zero is exact in F32,
/// F16, BF16 and F64; other dtypes of a tensor that needs zeroing are refused). Each weights file keeps its
/// `__metadata__` plus `mce_baked` (what was zeroed; it also marks the output as a bake), `mce_concepts`
/// (when the mask file names them), `config` for single files that have none (so the baked file loads on its
/// own), and `extraMetadata`.
///
/// Everything is written to a hidden temporary next to the destination and renamed into place at the end.
/// An existing destination is replaced only when it was itself written by a bake (its weights carry
/// `mce_baked`); anything else is refused, as is baking a model onto itself.
public enum Baker {
    /// Metadata key that marks a baked checkpoint (value: a summary of what was zeroed).
    public static let markerKey = "mce_baked"

    public struct Summary: Sendable {
        public let layout: CheckpointLayout
        /// Stored tensor names (as in the files) that had entries zeroed.
        public let modifiedTensors: [String]
        public let maskedUnits: Int
        public let totalUnits: Int
        /// Files written (relative to the destination folder, or the destination file itself).
        public let files: [String]
    }

    /// Bakes `masks` into the checkpoint at `model` and writes the result to `destination` (a folder for a
    /// folder input, a file for a file input). `config` overrides the config found with the model, as
    /// `--config` does (needed for BFL files whose RoPE split cannot be inferred).
    @discardableResult
    public static func bake(
        model: String, masks: MaskFile, to destination: String, config: FluxConfig? = nil,
        extraMetadata: [String: String] = [:]
    ) throws -> Summary {
        let fm = FileManager.default
        let loader: FluxWeightLoader
        do { loader = try FluxWeightLoader(path: model, config: config) } catch {
            throw ErasureError.badInput("cannot bake: \(error)")
        }
        let cfg = loader.config, store = loader.store
        if model.hasSuffix(".index.json") {
            throw ErasureError.badArgument("bake: pass the model folder, not its index file \(model)")
        }
        do { try masks.validate(for: cfg) } catch ErasureError.badInput(let m) {
            throw ErasureError.badInput("cannot bake into \(model): \(m)")
        }
        var isDir: ObjCBool = false
        _ = fm.fileExists(atPath: model, isDirectory: &isDir)
        let folderInput = isDir.boolValue
        try checkDestination(destination, model: model, folder: folderInput)

        // 1. What to zero, per stored tensor (store names, i.e. after prefix stripping).
        let plan = try zeroingPlan(masks: masks, loader: loader)

        // 2. Per file: name in file -> zeroing, and the file's output metadata.
        var perFile: [String: [String: Zeroing]] = [:]
        for (storeName, z) in plan {
            let file = try store.file(for: storeName), info = try store.info(storeName)
            guard [.F32, .F16, .BF16, .F64].contains(info.dtype) else {
                throw ErasureError.badInput(
                    "cannot bake into \(file.path): tensor '\(info.name)' is \(info.dtype.rawValue); zeroing masked units is supported (and exact) only in F32, F16, BF16 and F64 — convert the model first (e.g. mce export --dtype BF16)")
            }
            perFile[file.path, default: [:]][info.name] = z
        }
        let counts = masks.transformerMaskedCounts
        let masked = counts.reduce(0) { $0 + $1.masked }, total = counts.reduce(0) { $0 + $1.total }
        var added = [markerKey: "\(masked) of \(total) units in \(counts.count) mask sites zeroed"]
        if let list = masks.metadata[MaskFile.Key.mergedFrom] {
            added["mce_concepts"] = list
        } else if let c = masks.metadata[MaskFile.Key.concept] {
            added["mce_concepts"] = try metadataJSON([c])
        }
        func metadata(of file: SafeTensorsFile) -> [String: String] {
            var m = file.metadata.merging(added) { _, new in new }
            if !folderInput && m["config"] == nil {
                m["config"] = String(decoding: cfg.jsonData(pretty: false), as: UTF8.self)
            }
            return m.merging(extraMetadata) { _, new in new }
        }
        let modified = plan.keys.map { (try? store.info($0).name) ?? $0 }.sorted()

        // 3. Write.
        if !folderInput {
            let file = store.files[0]
            try writeFile(file, zeroing: perFile[file.path] ?? [:], metadata: metadata(of: file), to: destination)
            return Summary(layout: loader.layout, modifiedTensors: modified, maskedUnits: masked, totalUnits: total,
                           files: [destination])
        }
        let parent = (destination as NSString).deletingLastPathComponent
        let name = (destination as NSString).lastPathComponent
        let temp = (parent.isEmpty ? "." : parent) + "/.\(name).bake-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do { try fm.createDirectory(atPath: temp, withIntermediateDirectories: true) } catch {
            throw ErasureError.io("cannot create \(temp): \(error.localizedDescription)")
        }
        var done = false
        defer { if !done { try? fm.removeItem(atPath: temp) } }
        let root = URL(fileURLWithPath: model).standardizedFileURL.path
        var written: [String] = []
        for file in store.files {
            let full = URL(fileURLWithPath: file.path).standardizedFileURL.path
            guard full.hasPrefix(root + "/") else {
                throw ErasureError.badInput("cannot bake \(model): weights file \(file.path) lies outside the model folder")
            }
            let rel = String(full.dropFirst(root.count + 1))
            let out = (temp as NSString).appendingPathComponent(rel)
            try? fm.createDirectory(atPath: (out as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try writeFile(file, zeroing: perFile[file.path] ?? [:], metadata: metadata(of: file), to: out)
            written.append(rel)
        }
        // Other top-level files (config.json, the index, a README) are copied. Weights files the store does
        // not use (e.g. a second precision variant) and their indexes are left out: an unbaked copy of the
        // weights must never end up in a baked folder.
        let used = Set(written)
        let index = store.indexPath.map { ($0 as NSString).lastPathComponent }
        let entries = (try? fm.contentsOfDirectory(atPath: model)) ?? []
        for entry in entries.sorted() where !entry.hasPrefix(".") && !used.contains(entry) {
            let src = (model as NSString).appendingPathComponent(entry)
            var sub: ObjCBool = false
            guard fm.fileExists(atPath: src, isDirectory: &sub), !sub.boolValue else { continue }
            if entry.hasSuffix(".safetensors") || (entry.hasSuffix(".safetensors.index.json") && entry != index) { continue }
            do { try fm.copyItem(atPath: src, toPath: (temp as NSString).appendingPathComponent(entry)) } catch {
                throw ErasureError.io("cannot copy \(src) into the baked model: \(error.localizedDescription)")
            }
            written.append(entry)
        }
        try moveIntoPlace(temp, destination)
        done = true
        return Summary(layout: loader.layout, modifiedTensors: modified, maskedUnits: masked, totalUnits: total,
                       files: written.sorted())
    }

    // MARK: planning

    /// Rows and columns of one stored tensor to set to zero (for a 1-D bias, rows are its entries).
    struct Zeroing {
        var rows = Set<Int>()
        var columns = Set<Int>()

        /// Zeroes the planned elements of a row-major tensor of `shape` held in `bytes`.
        func apply(to bytes: UnsafeMutableRawBufferPointer, shape: [Int], elementSize e: Int) {
            let cols = shape.count > 1 ? shape.dropFirst().reduce(1, *) : 1
            let rowCount = shape.first ?? 1
            for r in rows { memset(bytes.baseAddress! + r * cols * e, 0, cols * e) }
            guard !columns.isEmpty else { return }
            let sortedColumns = columns.sorted()
            for r in 0..<rowCount {
                let row = bytes.baseAddress! + r * cols * e
                for c in sortedColumns { memset(row + c * e, 0, e) }
            }
        }
    }

    /// Store tensor name -> what to zero, from the masks' zero entries (see the table above).
    static func zeroingPlan(masks: MaskFile, loader: FluxWeightLoader) throws -> [String: Zeroing] {
        let cfg = loader.config, D = cfg.attentionHeadDim, d = cfg.dim
        var plan: [String: Zeroing] = [:]
        /// The stored tensor holding the whole diffusers tensor `name`, with its shape checked.
        /// The stored tensor holding the diffusers tensor `name` (whole, or as one run of its rows, as BFL's
        /// fused q/k/v), with the shape checked, and the row offset of `name` in it.
        func stored(_ name: String, allowRowSlice: Bool = false) throws -> (name: String, rowOffset: Int) {
            let pieces = loader.layout.pieces(for: name, config: cfg)
            guard pieces.count == 1, allowRowSlice || pieces[0].rows == nil else {
                throw ErasureError.badInput("cannot bake into \(loader.path): \(name) is not stored as a whole tensor in the \(loader.layout.rawValue) layout")
            }
            let s = pieces[0].name
            let info: TensorInfo
            do { info = try loader.store.info(s) } catch {
                throw ErasureError.badInput("cannot bake into \(loader.path): tensor '\(s)' (\(name)) is missing")
            }
            var want = cfg.diffusersShape(of: name)!
            if let r = pieces[0].rows {
                guard r.count == want[0], info.shape.count == want.count, info.shape[0] >= r.upperBound else {
                    throw ErasureError.badInput("cannot bake into \(loader.path): tensor '\(info.name)' (\(name)) has shape \(info.shape), which has no rows \(r) of shape \(want)")
                }
                want[0] = info.shape[0]
            }
            guard info.shape == want else {
                throw ErasureError.badInput("cannot bake into \(loader.path): tensor '\(info.name)' (\(name)) has shape \(info.shape), expected \(want) for this config")
            }
            return (s, pieces[0].rows?.lowerBound ?? 0)
        }
        func zeroRows(_ stem: String, _ rows: [Int]) throws {
            for leaf in ["weight", "bias"] {
                let (s, offset) = try stored("\(stem).\(leaf)", allowRowSlice: true)
                plan[s, default: Zeroing()].rows.formUnion(rows.map { offset + $0 })
            }
        }
        func zeroColumns(_ weight: String, _ cols: [Int]) throws {
            plan[try stored(weight).name, default: Zeroing()].columns.formUnion(cols)
        }
        let transformer = masks.transformerMasks
        for site in MaskFile.sorted(transformer.keys) {
            let off = transformer[site]!.indices.filter { transformer[site]![$0] == 0 }
            if off.isEmpty { continue }
            let heads = off.flatMap { h in (h * D)..<((h + 1) * D) }
            let b = "transformer_blocks.\(site.block)", s = "single_transformer_blocks.\(site.block)"
            switch site.kind {
            case .ff: try zeroColumns("\(b).ff.net.2.weight", off)
            case .ffContext: try zeroColumns("\(b).ff_context.net.2.weight", off)
            case .norm1: try zeroRows("\(b).norm1.linear", off)
            case .norm1Context: try zeroRows("\(b).norm1_context.linear", off)
            case .singleNorm: try zeroRows("\(s).norm.linear", off)
            // The double-block head mask scales the joint attention output, i.e. the inputs of both projections.
            case .doubleAttn:
                try zeroColumns("\(b).attn.to_out.0.weight", heads)
                try zeroColumns("\(b).attn.to_add_out.weight", heads)
            // proj_out's input is [attention (dim) | GELU(proj_mlp) (4·dim)].
            case .singleAttn: try zeroColumns("\(s).proj_out.weight", heads)
            case .projMLP: try zeroColumns("\(s).proj_out.weight", off.map { d + $0 })
            case .addQ, .addK, .addV: try zeroRows("\(b).\(site.kind.rawValue)", off)
            }
        }
        return plan
    }

    // MARK: writing

    /// Copies every tensor of `file` (names, dtypes, shapes, bytes) into a new file at `path`, zeroing the
    /// planned elements. Tensors are produced one at a time from the mapping (`SafeTensorsWriter` deferred
    /// entries), so memory stays at one tensor whatever the checkpoint size. Atomic.
    static func writeFile(_ file: SafeTensorsFile, zeroing: [String: Zeroing], metadata: [String: String], to path: String) throws {
        var w = SafeTensorsWriter(metadata: metadata)
        for info in file.tensors {
            let z = zeroing[info.name]
            w.add(info.name, shape: info.shape, dtype: info.dtype) { dst in
                let src = try file.rawBytes(info.name)
                precondition(src.count == dst.count)
                if let base = src.baseAddress, src.count > 0 { dst.baseAddress!.copyMemory(from: base, byteCount: src.count) }
                z?.apply(to: dst, shape: info.shape, elementSize: info.dtype.byteSize)
            }
        }
        do { try w.write(to: path) } catch { throw ErasureError.io("cannot write the baked model: \(error)") }
    }

    /// Refuses a destination that is the model itself, or that exists and is not an earlier bake's output.
    static func checkDestination(_ destination: String, model: String, folder: Bool) throws {
        let fm = FileManager.default
        func canonical(_ p: String) -> String { URL(fileURLWithPath: p).resolvingSymlinksInPath().standardizedFileURL.path }
        if canonical(destination) == canonical(model) {
            throw ErasureError.badArgument("bake: the destination \(destination) is the model itself; write the baked model to a new path")
        }
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: destination, isDirectory: &isDir) else { return }
        if isDir.boolValue != folder {
            throw ErasureError.badArgument(
                "bake: \(destination) already exists and is a \(isDir.boolValue ? "folder" : "file"), but the baked model of \(model) is a \(folder ? "folder" : "single file")")
        }
        let store = try? TensorStore(path: destination)
        guard let store, store.metadata[markerKey] != nil else {
            throw ErasureError.badArgument(
                "bake: \(destination) already exists and was not written by a bake (no checkpoint there has '\(markerKey)' in its __metadata__); remove it or choose another destination")
        }
    }

    /// Renames the finished temporary folder to `destination`, replacing an earlier bake there.
    static func moveIntoPlace(_ temp: String, _ destination: String) throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: destination) else {
            do { try fm.moveItem(atPath: temp, toPath: destination) } catch {
                throw ErasureError.io("cannot move the baked model into place at \(destination): \(error.localizedDescription)")
            }
            return
        }
        let parent = (destination as NSString).deletingLastPathComponent
        let old = (parent.isEmpty ? "." : parent) + "/.\((destination as NSString).lastPathComponent).old-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do { try fm.moveItem(atPath: destination, toPath: old) } catch {
            throw ErasureError.io("cannot replace \(destination): \(error.localizedDescription)")
        }
        do { try fm.moveItem(atPath: temp, toPath: destination) } catch {
            try? fm.moveItem(atPath: old, toPath: destination)
            throw ErasureError.io("cannot move the baked model into place at \(destination): \(error.localizedDescription)")
        }
        try? fm.removeItem(atPath: old)
    }
}
