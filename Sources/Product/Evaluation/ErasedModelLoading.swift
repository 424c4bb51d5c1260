import BLAS
import Erasure
import Flux
import Foundation
import Pipeline
import TextEncoder

extension ErasedModel {
    public enum Kind: Sendable { case masks, checkpoint }

    /// A mask file, an erase output folder (its masks.safetensors and report.json) or a checkpoint (with the erased
    /// text encoder beside it, when there is one); `option` names the argument in errors.
    public static func load(_ path: String, as kind: Kind?, base: FluxTransformer<Float>, baseHash: String, encoder: PromptEncoder,
                            option: String, log: (String) -> Void = { _ in }) throws -> ErasedModel {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { throw ErasureError.badArgument("\(option): \(path) does not exist") }
        let maskInDir = (path as NSString).appendingPathComponent("masks.safetensors")
        let isEraseDir = isDir.boolValue && fm.fileExists(atPath: maskInDir)
        // The output folder of a weight method (`mce erase --method finetune|esd`): its model/ and report.json.
        let modelInDir = (path as NSString).appendingPathComponent("model")
        let isWeightEraseDir = isDir.boolValue && !isEraseDir && fm.fileExists(atPath: modelInDir)
            && !fm.fileExists(atPath: (path as NSString).appendingPathComponent("config.json"))
        // A column is named after its erase folder when the file has the standard name inside one.
        let last = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let name = isEraseDir || isWeightEraseDir ? (path as NSString).lastPathComponent
            : ["masks", "model"].contains(last) ? ((path as NSString).deletingLastPathComponent as NSString).lastPathComponent + (last == "model" ? "-baked" : "")
            : last
        let looksLikeMasks = isEraseDir || (!isDir.boolValue && (try? MaskFile.read(path)) != nil)
        if kind == .masks || (kind == nil && looksLikeMasks) {
            guard looksLikeMasks else { throw ErasureError.badArgument("\(option): \(path) is neither a mask file nor an `mce erase` output folder") }
            let file = try MaskFile.read(isEraseDir ? maskInDir : path, config: base.config)
            if let h = file.metadata[MaskFile.Key.modelHash], h != baseHash {
                log("warning: \(path) was learned on a model with SHA-256 \(h.prefix(12))…, --model has \(baseHash.prefix(12))…")
            }
            let summary = (((isEraseDir ? maskInDir : path) as NSString).deletingLastPathComponent as NSString).appendingPathComponent("report.json")
            let cost = eraseCost(summary)
            return ErasedModel(name: name, source: path, masks: file.maskSet(), maskFile: file, encoder: try file.textEncoder(base: encoder),
                               eraseSeconds: cost?.eraseSeconds, peakRSSMiB: cost?.peakRSSMiB)
        }
        let loader: FluxWeightLoader
        do { loader = try FluxWeightLoader(path: isEraseDir || isWeightEraseDir ? modelInDir : path) } catch {
            throw ErasureError.badArgument("\(option): \(path) is not a loadable checkpoint: \(error)")
        }
        guard loader.config == base.config else {
            throw ErasureError.badArgument("\(option): \(path) has a different architecture from --model (\(loader.config) vs \(base.config))")
        }
        let cost = isWeightEraseDir ? eraseCost((path as NSString).appendingPathComponent("report.json")) : nil
        // A baked checkpoint from `mce erase` with text-encoder sites has the erased text encoder beside it.
        // (An erase output folder holds it as OUT/text_encoder, next to OUT/model.)
        let bakedText = ((isEraseDir ? path : (path as NSString).deletingLastPathComponent) as NSString).appendingPathComponent("text_encoder")
        var textEncoder: PromptEncoder?
        if kind == .checkpoint || !isDir.boolValue || (path as NSString).lastPathComponent == "model",
           fm.fileExists(atPath: (bakedText as NSString).appendingPathComponent("model.safetensors")) {
            textEncoder = PromptEncoder(miniLM: try MiniLM(directory: bakedText), paddedLength: encoder.paddedLength)
            log("\(option): using the erased text encoder \(bakedText) beside \(path)")
        }
        return ErasedModel(name: name, source: path, model: FluxTransformer(weights: try loader.load(as: Float.self)),
                           encoder: textEncoder, eraseSeconds: cost?.eraseSeconds, peakRSSMiB: cost?.peakRSSMiB)
    }

    struct EraseSummaryCost: Decodable { let cost: ErasureCost? }

    /// The cost an `mce erase` report.json records, if the file is there and has one.
    public static func eraseCost(_ reportPath: String) -> ErasureCost? {
        (try? Data(contentsOf: URL(fileURLWithPath: reportPath))).flatMap { try? JSONDecoder().decode(EraseSummaryCost.self, from: $0) }?.cost
    }
}
