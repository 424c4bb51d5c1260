// Element types of the safetensors format, their sizes, and the per-element decoders.

/// A safetensors element type. Raw values are the exact strings used in file headers.
///
/// The sub-byte types of the format (`F4`, `F6_E2M3`, `F6_E3M2`) are not representable here; the
/// reader rejects them with a clear error instead of mis-sizing them.
public enum DType: String, Sendable, CaseIterable {
    case BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64
    /// FP8 (OCP "FN" variants, as torch.float8_e4m3fn / float8_e5m2).
    case F8_E4M3, F8_E5M2
    /// FP8 power-of-two scale (OCP MX E8M0, torch.float8_e8m0fnu).
    case F8_E8M0
    /// FP8 "FNUZ" variants (no negative zero, single NaN at 0x80).
    case F8_E4M3FNUZ, F8_E5M2FNUZ
    /// Complex with two F32 parts. Readable as raw bytes only.
    case C64

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .BOOL, .U8, .I8, .F8_E4M3, .F8_E5M2, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ: return 1
        case .U16, .I16, .F16, .BF16: return 2
        case .U32, .I32, .F32: return 4
        case .U64, .I64, .F64, .C64: return 8
        }
    }

    /// True for BOOL and the integer types (the dtypes `int64s` reads exactly).
    public var isInteger: Bool {
        switch self {
        case .BOOL, .U8, .I8, .U16, .I16, .U32, .I32, .U64, .I64: return true
        default: return false
        }
    }

    /// True for the real floating-point types (including FP8).
    public var isFloatingPoint: Bool {
        switch self {
        case .F16, .BF16, .F32, .F64, .F8_E4M3, .F8_E5M2, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ: return true
        default: return false
        }
    }

    /// Whether `decode(_:into:)` to Float/Double is defined for this type (every real type; not C64).
    public var isDecodableToReal: Bool { self != .C64 }

    /// Position in the Rust reference's `Dtype` enum. Its writer orders tensors by this rank,
    /// descending (which puts wider, more-aligned types first), then by name; we copy that so the
    /// files we write are byte-identical to `safetensors.save_file` for the same tensors.
    var referenceRank: Int {
        switch self {
        case .BOOL: return 0
        // 1...3 are F4, F6_E2M3, F6_E3M2 (unsupported here)
        case .U8: return 4
        case .I8: return 5
        case .F8_E5M2: return 6
        case .F8_E4M3: return 7
        case .F8_E8M0: return 8
        case .F8_E4M3FNUZ: return 9
        case .F8_E5M2FNUZ: return 10
        case .I16: return 11
        case .U16: return 12
        case .F16: return 13
        case .BF16: return 14
        case .I32: return 15
        case .U32: return 16
        case .F32: return 17
        case .C64: return 18
        case .F64: return 19
        case .I64: return 20
        case .U64: return 21
        }
    }

    /// Dtype strings that the format defines but this library does not support.
    static let unsupportedNames: Set<String> = ["F4", "F6_E2M3", "F6_E3M2"]
}

// MARK: - Scalar conversions

/// bfloat16 is the top half of an IEEE float32, so widening is a shift.
@inline(__always)
func bf16ToFloat(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

/// float32 -> bfloat16 with round-to-nearest-even (what torch's `.to(torch.bfloat16)` does).
/// NaN stays NaN (quiet bit forced so truncation cannot turn it into infinity).
@inline(__always)
func floatToBF16(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
    let roundingBias: UInt32 = 0x7FFF &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
}

/// IEEE half -> float32 without F16C: shift exponent+mantissa into place and rescale by 2^112,
/// which is exact and also normalises subnormal halves; then patch Inf/NaN and the sign.
/// Exhaustively tested equal to `Float(Float16(bitPattern:))`, and several times faster than it on
/// x86_64 builds without F16C (where the Float16 conversion is a library call).
@inline(__always)
func f16ToFloat(_ h: UInt16) -> Float {
    let h32 = UInt32(h)
    let sign = (h32 & 0x8000) << 16
    let magnitude = h32 & 0x7FFF
    if magnitude >= 0x7C00 {  // Inf or NaN: keep the payload
        return Float(bitPattern: sign | 0x7F80_0000 | ((magnitude & 0x03FF) << 13))
    }
    let scaled = Float(bitPattern: magnitude << 13) * 0x1p112
    return Float(bitPattern: scaled.bitPattern | sign)
}

/// 256-entry tables for the 8-bit float types; built once, lazily (Swift globals are lazy and
/// thread-safe).
let f8E4M3Table: [Float] = (0..<256).map { minifloat(UInt8($0), exponentBits: 4, mantissaBits: 3, bias: 7, style: .fn) }
let f8E5M2Table: [Float] = (0..<256).map { minifloat(UInt8($0), exponentBits: 5, mantissaBits: 2, bias: 15, style: .ieee) }
let f8E4M3FNUZTable: [Float] = (0..<256).map { minifloat(UInt8($0), exponentBits: 4, mantissaBits: 3, bias: 8, style: .fnuz) }
let f8E5M2FNUZTable: [Float] = (0..<256).map { minifloat(UInt8($0), exponentBits: 5, mantissaBits: 2, bias: 16, style: .fnuz) }
let f8E8M0Table: [Float] = (0..<256).map { $0 == 0xFF ? .nan : Float(sign: .plus, exponent: $0 - 127, significand: 1) }

enum MinifloatStyle {
    case ieee  // top exponent = Inf (mantissa 0) / NaN
    case fn    // no infinities; only all-ones exponent+mantissa is NaN
    case fnuz  // no infinities, no negative zero; 0x80 is the only NaN
}

/// Decodes one small float with the given layout. Used only to build the tables above.
func minifloat(_ byte: UInt8, exponentBits: Int, mantissaBits: Int, bias: Int, style: MinifloatStyle) -> Float {
    let negative = byte & 0x80 != 0
    let exponentField = Int(byte >> UInt8(mantissaBits)) & ((1 << exponentBits) - 1)
    let mantissa = Int(byte) & ((1 << mantissaBits) - 1)
    let maxExponent = (1 << exponentBits) - 1
    switch style {
    case .ieee where exponentField == maxExponent:
        return mantissa == 0 ? (negative ? -.infinity : .infinity) : .nan
    case .fn where exponentField == maxExponent && mantissa == (1 << mantissaBits) - 1:
        return .nan
    case .fnuz where byte == 0x80:
        return .nan
    default:
        break
    }
    let magnitude: Float
    if exponentField == 0 {  // subnormal
        magnitude = Float(mantissa) * Float(sign: .plus, exponent: 1 - bias - mantissaBits, significand: 1)
    } else {
        magnitude = Float(sign: .plus, exponent: exponentField - bias, significand: 1 + Float(mantissa) / Float(1 << mantissaBits))
    }
    return negative ? -magnitude : magnitude
}
