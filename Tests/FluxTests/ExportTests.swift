import BLAS
import Flux
import Foundation
import SafeTensors
import TestSupport
import XCTest

final class ExportTests: XCTestCase {
    /// Loading a BFL file and writing a diffusers folder reproduces diffusers' own file tensor for tensor.
    func testWriteDiffusersFolderReproducesTheCheckpoint() throws {
        let config = try FluxConfig.load(json: URL(fileURLWithPath: Fixtures.golden("dev/config.json")))
        let weights = try FluxWeightLoader(path: Fixtures.golden("dev_bfl.safetensors"), config: config).load(as: Float.self)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mce-export-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try weights.writeDiffusersFolder(dir)
        let written = try SafeTensorsFile(path: dir + "/diffusion_pytorch_model.safetensors")
        let original = try SafeTensorsFile(path: Fixtures.golden("dev/diffusion_pytorch_model.safetensors"))
        XCTAssertEqual(written.names, original.names)
        for n in original.names {
            XCTAssertEqual(try written.info(n).shape, try original.info(n).shape, n)
            XCTAssertEqual(try written.floats(n), try original.floats(n), n)
        }
        XCTAssertEqual(try FluxWeightLoader(path: dir).config, config)
    }
}
