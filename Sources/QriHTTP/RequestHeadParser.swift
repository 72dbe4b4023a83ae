/// What feeding bytes to a `RequestHeadParser` produced.
public enum HeadParseResult: Equatable, Sendable {
    /// No complete head yet; keep the bytes and call again when more arrive.
    case incomplete
    /// A head, and how many bytes of the input it (and any empty lines before it) took.
    case complete(RequestHead, length: Int)
    /// The input can never become a valid head.
    case failed(HTTPError)
}

/// A strict, incremental HTTP/1.1 request-head parser.
///
/// The caller keeps the unconsumed bytes of a connection in one buffer and calls `parse` with
/// all of them each time more arrive; the parser remembers how far it has scanned, so a head
/// that arrives one byte at a time costs linear time. Call `reset()` after each head.
///
/// Strict means: CRLF line ends only (a bare CR or LF is `400`), no obs-fold, no white space
/// between a field name and its colon, token method and field names, printable targets,
/// HTTP/1.0 or HTTP/1.1 only, and `Host` required (once) on HTTP/1.1.
public struct RequestHeadParser: Sendable {
    public let limit: Int
    private var scanned = 0
    private var lineStart = 0

    /// - Parameter limit: the largest request line plus headers accepted (MAX_HEADER_BYTES).
    public init(limit: Int) { self.limit = limit }

    public mutating func reset() {
        scanned = 0
        lineStart = 0
    }

    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> HeadParseResult {
        // Find the empty line that ends the head, remembering progress between calls.
        var end = -1
        var i = scanned
        while i < bytes.count {
            if bytes[i] == 0x0A {
                let lineLength = i - lineStart
                let isEmpty = lineLength == 0 || (lineLength == 1 && bytes[lineStart] == 0x0D)
                if isEmpty && !Self.onlyEmptyLines(bytes, upTo: lineStart) {
                    end = i + 1
                    break
                }
                lineStart = i + 1
            }
            i += 1
        }
        scanned = i
        if end < 0 {
            if bytes.count > limit + 2 { return .failed(.headerTooLarge) }
            if bytes.count >= 4 && Self.looksLikeHTTP2(bytes) { return .failed(.versionNotSupported) }
            return .incomplete
        }
        let start = Self.leadingEmptyLinesLength(bytes)
        if end - start > limit + 2 { return .failed(.headerTooLarge) }
        switch Self.parseHead(UnsafeRawBufferPointer(rebasing: bytes[start..<end])) {
        case .success(let head): return .complete(head, length: end)
        case .failure(let error): return .failed(error)
        }
    }

    /// RFC 9112 §2.2: a server should ignore empty lines received before the request line.
    private static func onlyEmptyLines(_ bytes: UnsafeRawBufferPointer, upTo end: Int) -> Bool {
        leadingEmptyLinesLength(bytes) >= end
    }

    private static func leadingEmptyLinesLength(_ bytes: UnsafeRawBufferPointer) -> Int {
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x0A { i += 1 } else if bytes[i] == 0x0D && i + 1 < bytes.count && bytes[i + 1] == 0x0A { i += 2 } else { break }
        }
        return i
    }

    private static func looksLikeHTTP2(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let preface: [UInt8] = Array("PRI * HTTP/2".utf8)
        return bytes.count >= preface.count && zip(bytes, preface).allSatisfy { $0 == $1 }
    }

    // MARK: The head itself

    /// Parses one complete head: the request line and headers through the empty line.
    static func parseHead(_ bytes: UnsafeRawBufferPointer) -> Result<RequestHead, HTTPError> {
        var lines: [Range<Int>] = []
        var lineStart = 0
        for i in 0..<bytes.count {
            switch bytes[i] {
            case 0x0A:
                guard i > lineStart, bytes[i - 1] == 0x0D else { return .failure(.badRequest("bare LF")) }
                lines.append(lineStart..<(i - 1))
                lineStart = i + 1
            case 0x0D:
                guard i + 1 < bytes.count, bytes[i + 1] == 0x0A else { return .failure(.badRequest("bare CR")) }
            default:
                break
            }
        }
        guard let requestLine = lines.first else { return .failure(.badRequest("empty request")) }
        guard case .success(var head) = parseRequestLine(bytes, requestLine) else {
            return .failure(parseRequestLine(bytes, requestLine).failure!)
        }
        for line in lines.dropFirst() where !line.isEmpty {
            switch parseField(bytes, line) {
            case .success(let field): head.headers.append(field)
            case .failure(let error): return .failure(error)
            }
        }
        let hosts = head.headers("host")
        if head.minorVersion == 1 && hosts.isEmpty { return .failure(.badRequest("missing Host header")) }
        if hosts.count > 1 { return .failure(.badRequest("more than one Host header")) }
        return .success(head)
    }

    private static func parseRequestLine(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> Result<RequestHead, HTTPError> {
        let parts = bytes[line].split(separator: 0x20, maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(.badRequest("malformed request line")) }
        let method = Array(parts[0]), target = Array(parts[1]), version = Array(parts[2])
        guard !method.isEmpty, method.allSatisfy(isTokenByte) else { return .failure(.badRequest("malformed method")) }
        guard !target.isEmpty, target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(.badRequest("malformed request target"))
        }
        let minor: Int
        switch version {
        case Array("HTTP/1.1".utf8): minor = 1
        case Array("HTTP/1.0".utf8): minor = 0
        default:
            let prefix = Array("HTTP/".utf8)
            if version.count == 8, version.starts(with: prefix), (0x30...0x39).contains(version[5]),
               version[6] == 0x2E, (0x30...0x39).contains(version[7]) {
                return .failure(.versionNotSupported)
            }
            return .failure(.badRequest("malformed HTTP version"))
        }
        guard let (path, query) = splitTarget(target) else { return .failure(.badRequest("malformed request target")) }
        return .success(RequestHead(method: method, path: path, query: query, minorVersion: minor, headers: []))
    }

    /// Origin form (`/path?query`), asterisk form (`*`), or absolute form, whose scheme and
    /// authority are dropped.
    private static func splitTarget(_ target: [UInt8]) -> (path: [UInt8], query: [UInt8])? {
        var rest = target[...]
        if target == [0x2A] { return ([0x2A], []) }
        if rest.first != 0x2F {
            let lower = target.map { $0 | 0x20 }
            let schemes = [Array("http://".utf8), Array("https://".utf8)]
            guard let scheme = schemes.first(where: { lower.starts(with: $0) }) else { return nil }
            rest = rest.dropFirst(scheme.count)
            guard let slash = rest.firstIndex(where: { $0 == 0x2F || $0 == 0x3F }) else { return ([0x2F], []) }
            rest = rest[slash...]
            if rest.first == 0x3F { return ([0x2F], Array(rest.dropFirst())) }
        }
        // A fragment is never sent by conforming clients; drop it if one is.
        if let hash = rest.firstIndex(of: 0x23) { rest = rest[..<hash] }
        if let q = rest.firstIndex(of: 0x3F) {
            return (Array(rest[..<q]), Array(rest[(q + 1)...]))
        }
        return (Array(rest), [])
    }

    private static func parseField(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> Result<(name: [UInt8], value: [UInt8]), HTTPError> {
        let first = bytes[line.lowerBound]
        if first == 0x20 || first == 0x09 { return .failure(.badRequest("obsolete line folding")) }
        guard let colon = bytes[line].firstIndex(of: 0x3A) else { return .failure(.badRequest("header without colon")) }
        let name = bytes[line.lowerBound..<colon]
        guard !name.isEmpty, name.allSatisfy(isTokenByte) else { return .failure(.badRequest("malformed header name")) }
        var valueStart = colon + 1, valueEnd = line.upperBound
        while valueStart < valueEnd, bytes[valueStart] == 0x20 || bytes[valueStart] == 0x09 { valueStart += 1 }
        while valueEnd > valueStart, bytes[valueEnd - 1] == 0x20 || bytes[valueEnd - 1] == 0x09 { valueEnd -= 1 }
        let value = bytes[valueStart..<valueEnd]
        guard value.allSatisfy({ $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }) else {
            return .failure(.badRequest("control character in header value"))
        }
        return .success((name.map(lowercased), Array(value)))
    }

    @inline(__always) private static func lowercased(_ b: UInt8) -> UInt8 {
        (0x41...0x5A).contains(b) ? b | 0x20 : b
    }

    /// RFC 9110 tchar.
    @inline(__always) static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
        default: return false
        }
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
