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
        var bytes: [UInt8] = []
        serialize(into: &bytes)
        return bytes
    }

    /// Appends the head, through the empty line that ends it, to `bytes`.
    public func serialize(into bytes: inout [UInt8]) {
        bytes.reserveCapacity(bytes.count + 128)
        bytes.append(contentsOf: "HTTP/1.1 ".utf8)
        appendDecimal(status.code, to: &bytes)
        bytes.append(0x20)
        bytes.append(contentsOf: status.phrase.utf8)
        bytes.append(contentsOf: [0x0D, 0x0A])
        for (name, value) in headers {
            bytes.append(contentsOf: name.utf8)
            bytes.append(contentsOf: [0x3A, 0x20])
            // Never let a value end the head early.
            for byte in value.utf8 where byte != 0x0D && byte != 0x0A { bytes.append(byte) }
            bytes.append(contentsOf: [0x0D, 0x0A])
        }
        bytes.append(contentsOf: [0x0D, 0x0A])
    }

    /// A complete response with `body`, `Content-Length` set.
    public static func complete(_ status: HTTPStatus, headers: [(String, String)] = [], body: [UInt8]) -> [UInt8] {
        var head = ResponseHead(status, headers: headers)
        head.add("Content-Length", String(body.count))
        return head.serialized() + body
    }
}

/// Appends the decimal digits of `value` (not negative) without making a `String`.
func appendDecimal(_ value: Int, to bytes: inout [UInt8]) {
    var divisor = 1
    while divisor <= value / 10 { divisor *= 10 }
    var rest = value
    while divisor > 0 {
        bytes.append(UInt8(0x30 + rest / divisor))
        rest %= divisor
        divisor /= 10
    }
}
