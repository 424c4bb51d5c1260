// One name space over a checkpoint that may be a single file, a folder with one weights file, or
// a sharded folder described by `*.safetensors.index.json` (flux.md §6.2).

import Foundation

public final class TensorStore: @unchecked Sendable {
    // @unchecked: immutable after init; the files are themselves thread-safe for reading.

    /// The path as given.
    public let path: String
    /// The files backing the store (one per shard, each opened once), sorted by path.
    public let files: [SafeTensorsFile]
    /// The prefixes that were stripped from tensor names (a subset of `stripPrefixes`).
    public let strippedPrefixes: [String]
    /// For a single file its `__metadata__`; for a sharded checkpoint the shards' `__metadata__`
    /// merged, overridden by the index's "metadata" with non-string values written as compact JSON
    /// (e.g. "total_size": "1960704").
    public let metadata: [String: String]
    /// The index file, when the checkpoint is sharded.
    public let indexPath: String?

    private struct Location {
        let file: SafeTensorsFile
        let nameInFile: String
    }

    private let table: [String: Location]
    private let sortedNames: [String]
    /// Original (prefixed) name -> store name, for names that were renamed, so both spellings work.
    private let aliases: [String: String]

    /// Tensor names after prefix stripping, sorted.
    public var names: [String] { sortedNames }

    /// Opens a checkpoint.
    ///
    /// - `path` may be a `.safetensors` file, a `*.safetensors.index.json`, or a folder. In a folder,
    ///   an index wins (preferring `diffusion_pytorch_model.safetensors.index.json`, then
    ///   `model.safetensors.index.json`), otherwise the single weights file (preferring
    ///   `diffusion_pytorch_model.safetensors`, then `model.safetensors`). Several candidates and no
    ///   preferred name is an error listing them.
    /// - Each prefix in `stripPrefixes` (in order) is removed from every name that carries it,
    ///   unless that would make two names equal, in which case that prefix is left alone. So a
    ///   ComfyUI file whose keys all start with `model.diffusion_model.` reads like a diffusers/BFL
    ///   file, and other keys (e.g. a bundled VAE's) keep their names. The original names are
    ///   still accepted by every lookup.
    public init(path: String, stripPrefixes: [String] = ["model.diffusion_model."]) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw SafeTensorsError(file: path, message: "no such file or folder")
        }

        var locations: [(name: String, location: Location)] = []
        var files: [SafeTensorsFile] = []
        var metadata: [String: String] = [:]
        var indexPath: String?

        let target = isDirectory.boolValue ? try Self.chooseFile(inFolder: path) : path
        if target.hasSuffix(".index.json") {
            indexPath = target
            let index = try Self.readIndex(target)
            let folder = (target as NSString).deletingLastPathComponent
            var shards: [String: SafeTensorsFile] = [:]
            for (tensor, shardName) in index.weightMap {
                let shard: SafeTensorsFile
                if let open = shards[shardName] {
                    shard = open
                } else {
                    let shardPath = folder.isEmpty ? shardName : (folder as NSString).appendingPathComponent(shardName)
                    guard FileManager.default.fileExists(atPath: shardPath) else {
                        throw SafeTensorsError(file: shardPath, tensor: tensor, message: "shard file is missing; the index \(target) maps this tensor to it")
                    }
                    shard = try SafeTensorsFile(path: shardPath)
                    shards[shardName] = shard
                }
                guard shard.contains(tensor) else {
                    throw SafeTensorsError(file: shard.path, tensor: tensor, message: "not found in this shard, although the index \(target) maps it here")
                }
                locations.append((tensor, Location(file: shard, nameInFile: tensor)))
            }
            files = shards.values.sorted { $0.path < $1.path }
            for file in files {
                metadata.merge(file.metadata) { first, _ in first }
            }
            metadata.merge(index.metadata) { _, fromIndex in fromIndex }
        } else {
            let file = try SafeTensorsFile(path: target)
            files = [file]
            metadata = file.metadata
            locations = file.names.map { ($0, Location(file: file, nameInFile: $0)) }
        }

        // Prefix stripping.
        var table = [String: Location](minimumCapacity: locations.count)
        for (name, location) in locations { table[name] = location }
        var stripped: [String] = []
        var aliases: [String: String] = [:]
        for prefix in stripPrefixes where !prefix.isEmpty {
            let carrying = table.keys.filter { $0.hasPrefix(prefix) }
            if carrying.isEmpty { continue }
            let collides = carrying.contains { table[String($0.dropFirst(prefix.count))] != nil }
            if collides { continue }
            for old in carrying {
                let new = String(old.dropFirst(prefix.count))
                table[new] = table.removeValue(forKey: old)
                aliases[old] = new
            }
            // Keep aliases pointing at the final names when several prefixes apply in turn.
            for (original, current) in aliases where current.hasPrefix(prefix) {
                aliases[original] = String(current.dropFirst(prefix.count))
            }
            stripped.append(prefix)
        }

        self.files = files
        self.metadata = metadata
        self.indexPath = indexPath
        self.table = table
        self.sortedNames = table.keys.sorted()
        self.strippedPrefixes = stripped
        self.aliases = aliases
    }

    private func locate(_ name: String) throws -> Location {
        if let location = table[name] { return location }
        if let alias = aliases[name], let location = table[alias] { return location }
        throw SafeTensorsError(file: path, tensor: name, message: "no such tensor in this checkpoint (it has \(table.count) tensors)")
    }

    public func contains(_ name: String) -> Bool { (try? locate(name)) != nil }

    /// The tensor's dtype, shape and location in its file. `info.name` is the name inside the
    /// file, which differs from `name` when a prefix was stripped.
    public func info(_ name: String) throws -> TensorInfo {
        let location = try locate(name)
        return try location.file.info(location.nameInFile)
    }

    /// The file holding `name` (for raw access; look the tensor up there by `info(name).name`).
    public func file(for name: String) throws -> SafeTensorsFile { try locate(name).file }

    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let location = try locate(name)
        return try location.file.rawBytes(location.nameInFile)
    }

    public func decode(_ name: String, elements: Range<Int>? = nil, into destination: UnsafeMutableBufferPointer<Float>) throws {
        let location = try locate(name)
        try location.file.decode(location.nameInFile, elements: elements, into: destination)
    }

    public func decode(_ name: String, elements: Range<Int>? = nil, into destination: UnsafeMutableBufferPointer<Double>) throws {
        let location = try locate(name)
        try location.file.decode(location.nameInFile, elements: elements, into: destination)
    }

    public func decode(_ name: String, elements: Range<Int>? = nil, into destination: UnsafeMutableBufferPointer<Int64>) throws {
        let location = try locate(name)
        try location.file.decode(location.nameInFile, elements: elements, into: destination)
    }

    public func floats(_ name: String) throws -> [Float] {
        let location = try locate(name)
        return try location.file.floats(location.nameInFile)
    }

    public func doubles(_ name: String) throws -> [Double] {
        let location = try locate(name)
        return try location.file.doubles(location.nameInFile)
    }

    public func int64s(_ name: String) throws -> [Int64] {
        let location = try locate(name)
        return try location.file.int64s(location.nameInFile)
    }

    // MARK: Locating and reading the checkpoint

    static let preferredIndexNames = ["diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"]
    static let preferredFileNames = ["diffusion_pytorch_model.safetensors", "model.safetensors"]

    /// Picks the index or weights file to use in a folder (see `init`).
    private static func chooseFile(inFolder folder: String) throws -> String {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw SafeTensorsError(file: folder, message: "cannot list folder: \(error.localizedDescription)")
        }
        // Hidden files are skipped: they include half-written temporaries of SafeTensorsWriter.
        let visible = entries.filter { !$0.hasPrefix(".") }.sorted()
        func pick(_ candidates: [String], preferred: [String], kind: String) throws -> String? {
            if let name = preferred.first(where: candidates.contains) ?? (candidates.count == 1 ? candidates[0] : nil) {
                return (folder as NSString).appendingPathComponent(name)
            }
            if candidates.isEmpty { return nil }
            let list = candidates.prefix(6).joined(separator: ", ") + (candidates.count > 6 ? ", ..." : "")
            throw SafeTensorsError(file: folder, message: "folder holds \(candidates.count) \(kind) (\(list)) and none has a preferred name (\(preferred.joined(separator: ", "))); pass the file to use")
        }
        if let index = try pick(visible.filter { $0.hasSuffix(".safetensors.index.json") }, preferred: preferredIndexNames, kind: "index files") {
            return index
        }
        if let file = try pick(visible.filter { $0.hasSuffix(".safetensors") }, preferred: preferredFileNames, kind: ".safetensors files and no *.safetensors.index.json") {
            return file
        }
        throw SafeTensorsError(file: folder, message: "folder holds no .safetensors file and no *.safetensors.index.json")
    }

    private struct Index {
        var weightMap: [(tensor: String, shard: String)]
        var metadata: [String: String]
    }

    /// Reads `{"metadata": {...}, "weight_map": {tensor: shard file}}`.
    private static func readIndex(_ indexPath: String) throws -> Index {
        func fail(_ tensor: String?, _ message: String) -> SafeTensorsError {
            SafeTensorsError(file: indexPath, tensor: tensor, message: message)
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: indexPath), options: .mappedIfSafe)
        } catch {
            throw fail(nil, "cannot read index: \(error.localizedDescription)")
        }
        let root: JSONValue
        do {
            root = try data.withUnsafeBytes { raw throws(JSONSyntaxError) in try JSONParser.parse(raw) }
        } catch let error as JSONSyntaxError {
            throw fail(nil, "index is not valid JSON: \(error.message) at byte \(error.offset)")
        }
        guard case .object(let members) = root else {
            throw fail(nil, "index must be a JSON object, found \(root.typeName)")
        }
        var index = Index(weightMap: [], metadata: [:])
        var sawWeightMap = false
        for (key, value) in members {
            switch key {
            case "weight_map":
                guard case .object(let pairs) = value else {
                    throw fail(nil, "\"weight_map\" must be an object of tensor name -> shard file, found \(value.typeName)")
                }
                if sawWeightMap { throw fail(nil, "\"weight_map\" appears more than once") }
                sawWeightMap = true
                var seen = Set<String>()
                for (tensor, shard) in pairs {
                    guard seen.insert(tensor).inserted else { throw fail(tensor, "listed more than once in weight_map") }
                    guard case .string(let shardName) = shard, !shardName.isEmpty else {
                        throw fail(tensor, "weight_map value must be a shard file name, found \(shard.shortDescription)")
                    }
                    index.weightMap.append((tensor, shardName))
                }
            case "metadata":
                switch value {
                case .null: break
                case .object(let pairs):
                    for (k, v) in pairs {
                        if case .string(let s) = v { index.metadata[k] = s } else { index.metadata[k] = v.compactJSON }
                    }
                default:
                    throw fail(nil, "\"metadata\" must be an object, found \(value.typeName)")
                }
            default:
                continue
            }
        }
        guard sawWeightMap else { throw fail(nil, "index has no \"weight_map\"") }
        return index
    }
}
