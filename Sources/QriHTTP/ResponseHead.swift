/// Serializes a response status line and headers. Not on a hot path: stream heads are written
/// once per stream, admin answers once per request.
public struct ResponseHead: Sendable {
    public var status: HTTPStatus
    public var headers: [(String, String)]

    public init(_ status: HTTPStatus, headers: [(String, String)] = []) {
        self.status = status
        self.headers = headers
    }

    public mutating func add(_ name: String, _ value: String) {
        headers.append((name, value))
    }

    /// The head as bytes, through the empty line that ends it.
    public func serialized() -> [UInt8] {
        var text = "HTTP/1.1 \(status.code) \(status.phrase)\r\n"
        for (name, value) in headers {
            text += name
            text += ": "
            // Never let a value end the head early.
            text += value.contains(where: { $0 == "\r" || $0 == "\n" }) ? value.filter { $0 != "\r" && $0 != "\n" } : value
            text += "\r\n"
        }
        text += "\r\n"
        return Array(text.utf8)
    }

    /// A complete response with `body`, `Content-Length` set.
    public static func complete(_ status: HTTPStatus, headers: [(String, String)] = [], body: [UInt8]) -> [UInt8] {
        var head = ResponseHead(status, headers: headers)
        head.add("Content-Length", String(body.count))
        return head.serialized() + body
    }
}
