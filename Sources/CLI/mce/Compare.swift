import ArgumentParser
import Foundation
import SafeTensors

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compares a tensor of one safetensors file with a tensor of another: max |a − b| and its ratio to max |b|.")

    @Argument(help: "First file.") var fileA: String
    @Argument(help: "Tensor in the first file.") var tensorA: String
    @Argument(help: "Second (reference) file.") var fileB: String
    @Argument(help: "Tensor in the second file.") var tensorB: String

    @Option(help: "Fail (exit 1) when max|a − b| / max|b| exceeds this.")
    var tolerance: Double?

    func run() throws {
        try reportingErrors {
            let ia = try SafeTensorsFile(path: fileA), ib = try SafeTensorsFile(path: fileB)
            let sa = try ia.info(tensorA).shape, sb = try ib.info(tensorB).shape
            guard sa.reduce(1, *) == sb.reduce(1, *) else {
                throw CLIError("\(fileA):\(tensorA) has shape \(sa) but \(fileB):\(tensorB) has shape \(sb)")
            }
            let a = try ia.doubles(tensorA), b = try ib.doubles(tensorB)
            var diff = 0.0, scale = 0.0
            for i in 0..<a.count {
                diff = max(diff, abs(a[i] - b[i]))
                scale = max(scale, abs(b[i]))
            }
            let rel = scale > 0 ? diff / scale : diff
            print(String(format: "%@ vs %@: max|diff| %.3e, max|ref| %.3e, relative %.3e", tensorA, tensorB, diff, scale, rel))
            if let tolerance, !(rel <= tolerance) { throw CLIError("relative difference \(rel) exceeds --tolerance \(tolerance)") }
        }
    }
}
