import Foundation

/// Every failure of this module: which file, which tensor (when one is involved), and what was
/// wrong or expected. `description` reads like
/// `model.safetensors: tensor 'x.weight': declared shape [3, 4] (F32) needs 48 bytes but data_offsets [0, 40] span 40`.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable, LocalizedError {
    /// The path of the file (or folder) involved, as it was given to the API.
    public let file: String
    /// The tensor involved, if any.
    public let tensor: String?
    /// What went wrong, including what was expected.
    public let message: String

    public init(file: String, tensor: String? = nil, message: String) {
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        if let tensor { return "\(file): tensor '\(tensor)': \(message)" }
        return "\(file): \(message)"
    }

    public var errorDescription: String? { description }
}

/// The text for the current `errno`, for I/O error messages.
func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code)) + " (errno \(code))"
}
