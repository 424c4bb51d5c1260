import Foundation

/// Errors of image files and grids; `description` is a complete sentence meant for a person.
public enum ImageError: Error, CustomStringConvertible, LocalizedError, Equatable {
    case invalidArgument(String)
    /// libpng reported an error (or the file could not be written/renamed).
    case png(path: String, message: String)

    public var description: String {
        switch self {
        case let .invalidArgument(message): return message
        case let .png(path, message): return "PNG \(path): \(message)"
        }
    }

    public var errorDescription: String? { description }
}
