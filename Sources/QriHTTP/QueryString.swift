/// `name=value&…` pairs from a query string or an `application/x-www-form-urlencoded` body.
public struct QueryString: Sendable {
    public private(set) var pairs: [(name: [UInt8], value: [UInt8])] = []

    /// Splits and percent-decodes `bytes`. A `%` not followed by two hex digits stays as it is.
    /// - Parameter plusIsSpace: true for form bodies; false for `/stream`, where qri-js sends
    ///   `+` unencoded and means a plus.
    public init(_ bytes: some Collection<UInt8>, plusIsSpace: Bool) {
        for part in bytes.split(separator: 0x26) where !part.isEmpty {
            if let eq = part.firstIndex(of: 0x3D) {
                pairs.append((Self.decode(part[..<eq], plusIsSpace), Self.decode(part[part.index(after: eq)...], plusIsSpace)))
            } else {
                pairs.append((Self.decode(part, plusIsSpace), []))
            }
        }
    }

    /// The first value of `name`, or nil.
    public func value(_ name: String) -> [UInt8]? {
        let key = Array(name.utf8)
        return pairs.first { $0.name == key }?.value
    }

    public static func decode(_ bytes: some Collection<UInt8>, _ plusIsSpace: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i != bytes.endIndex {
            let b = bytes[i]
            if b == 0x25 {
                let h1 = bytes.index(after: i)
                if h1 != bytes.endIndex {
                    let h2 = bytes.index(after: h1)
                    if h2 != bytes.endIndex, let hi = hexValue(bytes[h1]), let lo = hexValue(bytes[h2]) {
                        out.append(hi << 4 | lo)
                        i = bytes.index(after: h2)
                        continue
                    }
                }
                out.append(b)
            } else if b == 0x2B && plusIsSpace {
                out.append(0x20)
            } else {
                out.append(b)
            }
            i = bytes.index(after: i)
        }
        return out
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
