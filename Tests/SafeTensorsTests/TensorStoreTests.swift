import Foundation
import XCTest

@testable import SafeTensors

final class TensorStoreTests: TempDirTestCase {
    /// Writes a diffusers-style sharded checkpoint into `folder` and returns the index path.
    @discardableResult
    private func writeSharded(
        in folder: String, prefix: String = "diffusion_pytorch_model",
        shards: [[(String, [Float])]], indexOverride: [String: String]? = nil
    ) throws -> String {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var weightMap: [String: String] = [:]
        var total = 0
        for (k, tensors) in shards.enumerated() {
            let shardName = String(format: "%@-%05d-of-%05d.safetensors", prefix, k + 1, shards.count)
            var writer = SafeTensorsWriter(metadata: ["format": "pt"])
            for (name, values) in tensors {
                writer.add(name, shape: [values.count], floats: values)
                weightMap[name] = shardName
                total += 4 * values.count
            }
            try writer.write(to: (folder as NSString).appendingPathComponent(shardName))
        }
        let map = (indexOverride ?? weightMap).sorted { $0.key < $1.key }
            .map { "    \"\($0.key)\": \"\($0.value)\"" }.joined(separator: ",\n")
        let json = "{\n  \"metadata\": {\n    \"total_size\": \(total),\n    \"note\": \"hi\"\n  },\n  \"weight_map\": {\n\(map)\n  }\n}\n"
        let indexPath = (folder as NSString).appendingPathComponent("\(prefix).safetensors.index.json")
        try json.write(toFile: indexPath, atomically: true, encoding: .utf8)
        return indexPath
    }

    private let shards: [[(String, [Float])]] = [
        [("a.weight", [1, 2]), ("a.bias", [3])],
        [("b.weight", [4, 5, 6])],
        [("c.weight", [7]), ("c.bias", [])],
    ]

    func testShardedFolder() throws {
        let folder = tempPath("transformer")
        let indexPath = try writeSharded(in: folder, shards: shards)
        for path in [folder, indexPath] {
            let store = try TensorStore(path: path)
            XCTAssertEqual(store.names, ["a.bias", "a.weight", "b.weight", "c.bias", "c.weight"])
            XCTAssertEqual(store.files.count, 3, "each shard opened once")
            XCTAssertEqual(store.indexPath, indexPath)
            XCTAssertEqual(store.metadata, ["total_size": "28", "note": "hi", "format": "pt"])
            XCTAssertEqual(try store.floats("b.weight"), [4, 5, 6])
            XCTAssertEqual(try store.doubles("a.weight"), [1, 2])
            XCTAssertEqual(try store.floats("c.bias"), [])
            XCTAssertEqual(try store.info("c.weight").shape, [1])
            XCTAssertTrue(try store.file(for: "c.weight").path.hasSuffix("diffusion_pytorch_model-00003-of-00003.safetensors"))
            XCTAssertTrue(store.contains("a.bias"))
            XCTAssertFalse(store.contains("z"))
            var out = [Float](repeating: 0, count: 2)
            try out.withUnsafeMutableBufferPointer { try store.decode("b.weight", elements: 1..<3, into: $0) }
            XCTAssertEqual(out, [5, 6])
            assertSTError({ _ = try store.info("z") }, fileName: (path as NSString).lastPathComponent, tensor: "z", mentions: ["no such tensor"])
        }
    }

    func testMissingShard() throws {
        let folder = tempPath("sharded")
        try writeSharded(in: folder, shards: shards)
        try FileManager.default.removeItem(atPath: (folder as NSString).appendingPathComponent("diffusion_pytorch_model-00002-of-00003.safetensors"))
        assertSTError({ _ = try TensorStore(path: folder) }, fileName: "diffusion_pytorch_model-00002-of-00003.safetensors", tensor: "b.weight", mentions: ["missing", "index"])
    }

    func testTensorMissingFromItsShard() throws {
        let folder = tempPath("sharded")
        var map = [String: String]()
        map["a.weight"] = "diffusion_pytorch_model-00001-of-00003.safetensors"
        map["ghost"] = "diffusion_pytorch_model-00002-of-00003.safetensors"
        try writeSharded(in: folder, shards: shards, indexOverride: map)
        assertSTError({ _ = try TensorStore(path: folder) }, fileName: "diffusion_pytorch_model-00002-of-00003.safetensors", tensor: "ghost", mentions: ["not found in this shard"])
    }

    func testBrokenIndex() throws {
        let folder = tempPath("broken")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let index = (folder as NSString).appendingPathComponent("model.safetensors.index.json")
        let cases: [(String, [String])] = [
            ("{", ["not valid JSON"]),
            ("[]", ["must be a JSON object"]),
            (#"{"metadata":{}}"#, ["no \"weight_map\""]),
            (#"{"weight_map":{"a":1}}"#, ["'a'", "shard file name"]),
            (#"{"weight_map":{"a":"x.safetensors","a":"y.safetensors"}}"#, ["'a'", "more than once"]),
        ]
        for (json, mentions) in cases {
            try json.write(toFile: index, atomically: false, encoding: .utf8)
            assertSTError({ _ = try TensorStore(path: folder) }, fileName: "model.safetensors.index.json", mentions: mentions)
        }
    }

    func testSingleFileAndFolderWithOneFile() throws {
        let folder = tempPath("vae")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        writer.add("x", shape: [2], floats: [1, 2])
        let path = (folder as NSString).appendingPathComponent("weights.safetensors")
        try writer.write(to: path)
        for p in [path, folder] {
            let store = try TensorStore(path: p)
            XCTAssertEqual(store.names, ["x"])
            XCTAssertEqual(store.metadata, ["format": "pt"])
            XCTAssertNil(store.indexPath)
            XCTAssertEqual(try store.floats("x"), [1, 2])
        }
    }

    func testFolderPreferences() throws {
        let folder = tempPath("multi")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        func write(_ name: String, _ value: Float) throws {
            var writer = SafeTensorsWriter()
            writer.add("v", shape: [1], floats: [value])
            try writer.write(to: (folder as NSString).appendingPathComponent(name))
        }
        try write("other.safetensors", 1)
        try write("another.safetensors", 2)
        assertSTError({ _ = try TensorStore(path: folder) }, fileName: "multi", mentions: ["2 .safetensors files", "another.safetensors", "other.safetensors"])
        try write("model.safetensors", 3)
        XCTAssertEqual(try TensorStore(path: folder).floats("v"), [3])
        try write("diffusion_pytorch_model.safetensors", 4)
        XCTAssertEqual(try TensorStore(path: folder).floats("v"), [4])
        // An index wins over single files, as in diffusers.
        try writeSharded(in: folder, shards: [[("v", [5])]])
        XCTAssertEqual(try TensorStore(path: folder).floats("v"), [5])
    }

    func testEmptyAndMissingPaths() throws {
        let folder = tempPath("nothing")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try "x".write(toFile: (folder as NSString).appendingPathComponent("README.md"), atomically: false, encoding: .utf8)
        assertSTError({ _ = try TensorStore(path: folder) }, fileName: "nothing", mentions: ["no .safetensors file"])
        assertSTError({ _ = try TensorStore(path: self.tempPath("absent")) }, fileName: "absent", mentions: ["no such file"])
        // Errors of the underlying file propagate with its name.
        let bad = try writeBytes([1, 2, 3], to: "tiny.safetensors")
        assertSTError({ _ = try TensorStore(path: bad) }, fileName: "tiny.safetensors", mentions: ["8-byte"])
    }

    func testPrefixStrippingWhenAllKeysCarryIt() throws {
        var writer = SafeTensorsWriter()
        writer.add("model.diffusion_model.img_in.weight", shape: [2], floats: [1, 2])
        writer.add("model.diffusion_model.img_in.bias", shape: [1], floats: [3])
        let path = tempPath("comfy.safetensors")
        try writer.write(to: path)

        let store = try TensorStore(path: path)
        XCTAssertEqual(store.names, ["img_in.bias", "img_in.weight"])
        XCTAssertEqual(store.strippedPrefixes, ["model.diffusion_model."])
        XCTAssertEqual(try store.floats("img_in.weight"), [1, 2])
        // The file's own name is still accepted, and info reports it.
        XCTAssertEqual(try store.floats("model.diffusion_model.img_in.bias"), [3])
        XCTAssertEqual(try store.info("img_in.bias").name, "model.diffusion_model.img_in.bias")

        let raw = try TensorStore(path: path, stripPrefixes: [])
        XCTAssertEqual(raw.names, ["model.diffusion_model.img_in.bias", "model.diffusion_model.img_in.weight"])
        XCTAssertEqual(raw.strippedPrefixes, [])
        // A hint points at the prefix when looking up the bare name in the file itself.
        assertSTError({ _ = try SafeTensorsFile(path: path).info("img_in.bias") }, fileName: "comfy.safetensors", tensor: "img_in.bias", mentions: ["model.diffusion_model.img_in.bias"])
    }

    func testPrefixStrippingWithOtherKeysAndCollisions() throws {
        var writer = SafeTensorsWriter()
        writer.add("model.diffusion_model.x", shape: [1], floats: [1])
        writer.add("first_stage_model.y", shape: [1], floats: [2])
        let path = tempPath("full.safetensors")
        try writer.write(to: path)
        let store = try TensorStore(path: path)
        XCTAssertEqual(store.names, ["first_stage_model.y", "x"])
        XCTAssertEqual(try store.floats("x"), [1])

        // Stripping would merge two tensors: leave the names alone.
        var clash = SafeTensorsWriter()
        clash.add("model.diffusion_model.x", shape: [1], floats: [1])
        clash.add("x", shape: [1], floats: [2])
        let clashPath = tempPath("clash.safetensors")
        try clash.write(to: clashPath)
        let clashStore = try TensorStore(path: clashPath)
        XCTAssertEqual(clashStore.names, ["model.diffusion_model.x", "x"])
        XCTAssertEqual(clashStore.strippedPrefixes, [])
        XCTAssertEqual(try clashStore.floats("x"), [2])

        // Several prefixes apply in turn; original names still resolve.
        let chained = try TensorStore(path: path, stripPrefixes: ["model.", "diffusion_model."])
        XCTAssertEqual(chained.names, ["first_stage_model.y", "x"])
        XCTAssertEqual(try chained.floats("model.diffusion_model.x"), [1])
    }

    func testPrefixStrippingAcrossShards() throws {
        let folder = tempPath("comfy-sharded")
        try writeSharded(in: folder, prefix: "model", shards: [
            [("model.diffusion_model.a", [1])], [("model.diffusion_model.b", [2, 3])],
        ])
        let store = try TensorStore(path: folder)
        XCTAssertEqual(store.names, ["a", "b"])
        XCTAssertEqual(try store.floats("b"), [2, 3])
    }
}
