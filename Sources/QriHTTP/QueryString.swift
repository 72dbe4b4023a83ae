/// `name=value&…` pairs from a query string or an `application/x-www-form-urlencoded` body.
/// Names and values that need no decoding are slices of the given bytes (no copy).
public struct QueryString: Sendable {
    public private(set) var pairs: [(name: ArraySlice<UInt8>, value: ArraySlice<UInt8>)] = []

    /// Splits and percent-decodes `bytes`. A `%` not followed by two hex digits stays as it is.
    /// - Parameter plusIsSpace: true for form bodies; false for `/stream`, where qri-js sends
    ///   `+` unencoded and means a plus.
    public init(_ bytes: ArraySlice<UInt8>, plusIsSpace: Bool) {
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = bytes[start...].firstIndex(of: 0x26) ?? bytes.endIndex
            if start < end {
                let part = bytes[start..<end]
                if let eq = part.firstIndex(of: 0x3D) {
                    pairs.append((Self.decode(part[..<eq], plusIsSpace), Self.decode(part[(eq + 1)...], plusIsSpace)))
                } else {
                    pairs.append((Self.decode(part, plusIsSpace), []))
                }
            }
            start = end + 1
        }
    }

    public init(_ bytes: [UInt8], plusIsSpace: Bool) {
        self.init(bytes[...], plusIsSpace: plusIsSpace)
    }

    /// The first value of `name`, or nil.
    public func value(_ name: StaticString) -> ArraySlice<UInt8>? {
        name.withUTF8Buffer { name in pairs.first { $0.name.elementsEqual(name) }?.value }
    }

    public static func decode(_ bytes: ArraySlice<UInt8>, _ plusIsSpace: Bool) -> ArraySlice<UInt8> {
        guard bytes.contains(where: { $0 == 0x25 || ($0 == 0x2B && plusIsSpace) }) else { return bytes }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == 0x25, bytes.endIndex - i > 2, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
                continue
            }
            out.append(b == 0x2B && plusIsSpace ? 0x20 : b)
            i += 1
        }
        return out[...]
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x61...0x66: return b - 0x61 + 10
        case 0x41...0x46: return b - 0x41 + 10
        default: return nil
        }
    }
}
