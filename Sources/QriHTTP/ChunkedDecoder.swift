/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 §7.1) incrementally and strictly:
/// hex sizes of at most 15 digits, CRLF line ends, chunk extensions and trailers skipped but
/// bounded.
public struct ChunkedDecoder: Sendable {
    private enum State: Sendable {
        case size(digits: Int)
        case extensionText
        case sizeLF
        case data(remaining: Int)
        case dataCR
        case dataLF
        case trailerStart
        case trailerLine
        case trailerLF(empty: Bool)
        case done
    }

    private var state = State.size(digits: 0)
    private var size = 0
    private var overhead = 0
    public let maxBodyBytes: Int
    /// Bounds extension and trailer bytes, which carry nothing Qri reads.
    public let maxOverheadBytes: Int
    public private(set) var body: [UInt8] = []

    public init(maxBodyBytes: Int, maxOverheadBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
        self.maxOverheadBytes = maxOverheadBytes
    }

    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    /// Consumes bytes from `bytes`; returns how many were used (all of them unless the body
    /// ended before their end).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) throws(HTTPError) -> Int {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            switch state {
            case .size(let digits):
                if let v = Self.hex(b) {
                    guard digits < 15 else { throw .badRequest("chunk size too long") }
                    size = size << 4 | Int(v)
                    state = .size(digits: digits + 1)
                } else if digits > 0 && (b == 0x3B || b == 0x20 || b == 0x09) {
                    state = .extensionText
                } else if digits > 0 && b == 0x0D {
                    state = .sizeLF
                } else {
                    throw .badRequest("malformed chunk size")
                }
            case .extensionText:
                try countOverhead()
                if b == 0x0D { state = .sizeLF } else if b == 0x0A || b < 0x09 || b == 0x7F { throw .badRequest("malformed chunk extension") }
            case .sizeLF:
                guard b == 0x0A else { throw .badRequest("bare CR in chunked body") }
                if size == 0 {
                    state = .trailerStart
                } else {
                    guard body.count + size <= maxBodyBytes else { throw .bodyTooLarge }
                    state = .data(remaining: size)
                }
                size = 0
            case .data(let remaining):
                let n = min(remaining, bytes.count - i)
                body.append(contentsOf: bytes[i..<(i + n)])
                i += n
                state = remaining == n ? .dataCR : .data(remaining: remaining - n)
                continue
            case .dataCR:
                guard b == 0x0D else { throw .badRequest("chunk data longer than its size") }
                state = .dataLF
            case .dataLF:
                guard b == 0x0A else { throw .badRequest("bare CR in chunked body") }
                state = .size(digits: 0)
            case .trailerStart:
                if b == 0x0D {
                    state = .trailerLF(empty: true)
                } else if b == 0x0A {
                    throw .badRequest("bare LF in trailer")
                } else {
                    try countOverhead()
                    state = .trailerLine
                }
            case .trailerLine:
                try countOverhead()
                if b == 0x0D { state = .trailerLF(empty: false) } else if b == 0x0A { throw .badRequest("bare LF in trailer") }
            case .trailerLF(let empty):
                guard b == 0x0A else { throw .badRequest("bare CR in trailer") }
                if empty {
                    state = .done
                    return i + 1
                }
                state = .trailerStart
            case .done:
                return i
            }
            i += 1
        }
        return i
    }

    private mutating func countOverhead() throws(HTTPError) {
        overhead += 1
        if overhead > maxOverheadBytes { throw .headerTooLarge }
    }

    private static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x61...0x66: return b - 0x61 + 10
        case 0x41...0x46: return b - 0x41 + 10
        default: return nil
        }
    }
}
