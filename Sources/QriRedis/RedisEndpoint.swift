/// One Redis server of the cluster, from a `redis://[user:password@]host:port[/db]` or
/// `rediss://…` (TLS) URL. The password is kept for AUTH and never printed: `description`
/// leaves it out.
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public let tls: Bool
    public let host: String
    public let port: UInt16
    public let user: String?
    public let password: String?
    public let database: Int

    /// Parses `text`; nil when it is not such a URL.
    public init?(url text: String) {
        var rest = Substring(text)
        if rest.hasPrefix("redis://") {
            tls = false
            rest = rest.dropFirst(8)
        } else if rest.hasPrefix("rediss://") {
            tls = true
            rest = rest.dropFirst(9)
        } else {
            return nil
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0, n < 1 << 16 else { return nil }
                database = n
            }
            rest = rest[..<slash]
        }
        var user: String?, password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let u = Self.percentDecoded(credentials[..<colon])
                user = u.isEmpty ? nil : u
                password = Self.percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                password = Self.percentDecoded(credentials)
            }
        }
        var host: Substring, port: UInt16 = 6379
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = UInt16(after.dropFirst()), p > 0 else { return nil }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let p = UInt16(rest[rest.index(after: colon)...]), p > 0 else { return nil }
            port = p
        } else {
            host = rest
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
        self.host = String(host)
        self.port = port
        self.user = user
        self.password = password
        self.database = database
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(tls ? "rediss" : "redis")://\(h):\(port)\(database == 0 ? "" : "/\(database)")"
    }

    private static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var i = text.utf8.startIndex
        let utf8 = text.utf8
        while i < utf8.endIndex {
            let b = utf8[i]
            if b == UInt8(ascii: "%"), let h = utf8.index(i, offsetBy: 2, limitedBy: utf8.endIndex), h < utf8.endIndex,
               let v = UInt8(String(decoding: utf8[utf8.index(after: i)...h], as: UTF8.self), radix: 16) {
                bytes.append(v)
                i = utf8.index(after: h)
            } else {
                bytes.append(b)
                i = utf8.index(after: i)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
