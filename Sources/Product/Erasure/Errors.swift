/// Errors of the erasure commands; the message names the argument or file and what was expected.
public enum ErasureError: Error, CustomStringConvertible {
    case badArgument(String)
    case badInput(String)
    case io(String)

    public var description: String {
        switch self {
        case .badArgument(let m), .badInput(let m), .io(let m): return m
        }
    }
}
