/// A parsed request line and header block. Names are kept lower-cased; values as sent,
/// without surrounding white space.
public struct RequestHead: Equatable, Sendable {
    public var method: [UInt8]
    /// The path part of the request target, still percent-encoded.
    public var path: [UInt8]
    /// The query part of the request target (after `?`), still percent-encoded; empty if none.
    public var query: [UInt8]
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int
    public var headers: [(name: [UInt8], value: [UInt8])]

    public init(method: [UInt8], path: [UInt8], query: [UInt8], minorVersion: Int,
                headers: [(name: [UInt8], value: [UInt8])]) {
        self.method = method
        self.path = path
        self.query = query
        self.minorVersion = minorVersion
        self.headers = headers
    }

    public static func == (a: RequestHead, b: RequestHead) -> Bool {
        a.method == b.method && a.path == b.path && a.query == b.query && a.minorVersion == b.minorVersion
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }

    /// The first value of header `name` (give it lower-cased).
    public func header(_ name: StaticString) -> [UInt8]? {
        name.withUTF8Buffer { key in headers.first { $0.name.elementsEqual(key) }?.value }
    }

    /// Every value of header `name` (give it lower-cased).
    public func headers(_ name: StaticString) -> [[UInt8]] {
        name.withUTF8Buffer { key in headers.filter { $0.name.elementsEqual(key) }.map(\.value) }
    }

    public func methodIs(_ name: StaticString) -> Bool {
        name.withUTF8Buffer { method.elementsEqual($0) }
    }

    public func pathIs(_ name: StaticString) -> Bool {
        name.withUTF8Buffer { path.elementsEqual($0) }
    }

    /// Whether the client asked to keep the connection open after this request.
    public var wantsKeepAlive: Bool {
        let connection = header("connection") ?? []
        if minorVersion == 0 { return Self.hasToken(connection, "keep-alive") }
        return !Self.hasToken(connection, "close")
    }

    /// Whether the comma-separated `list` holds `token` (give it lower-cased), in any case.
    static func hasToken(_ list: [UInt8], _ token: StaticString) -> Bool {
        token.withUTF8Buffer { token in
            list.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: true).contains { item in
                var item = item[...]
                while let c = item.first, c == 0x20 || c == 0x09 { item = item.dropFirst() }
                while let c = item.last, c == 0x20 || c == 0x09 { item = item.dropLast() }
                return item.count == token.count && zip(item, token).allSatisfy { a, b in
                    (a >= 0x41 && a <= 0x5A ? a | 0x20 : a) == b
                }
            }
        }
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return s
    }
}
