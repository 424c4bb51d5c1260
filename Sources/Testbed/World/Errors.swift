import Foundation

/// Errors of the World module; `description` is a complete sentence meant for a person.
public enum WorldError: Error, CustomStringConvertible, LocalizedError, Equatable {
    /// A dataset file is not where the loader looked.
    case missingDatasetFile(dataset: String, path: String)
    /// A file exists but is not what it should be.
    case badFile(path: String, reason: String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .missingDatasetFile(dataset, path):
            return "\(dataset) file not found: \(path). Run scripts/fetch_datasets.sh to install the datasets "
                + "(it writes them to $MCE_DATA, else $MCE_CACHE, else ~/.cache/mce; the loaders look there)."
        case let .badFile(path, reason):
            return "\(path): \(reason)"
        case let .invalidArgument(message):
            return message
        }
    }

    public var errorDescription: String? { description }
}
