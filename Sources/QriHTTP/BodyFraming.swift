/// How a request's body is delimited (RFC 9112 §6.3), decided from its head.
public enum BodyFraming: Equatable, Sendable {
    case none
    case contentLength(Int)
    case chunked
}

extension RequestHead {
    /// The body framing, or the error that makes the length ambiguous: `Content-Length` with
    /// `Transfer-Encoding`, differing or malformed lengths, or a coding other than chunked —
    /// the shapes request smuggling is made of.
    public func bodyFraming() -> Result<BodyFraming, HTTPError> {
        let encodings = headers("transfer-encoding")
        let lengths = headers("content-length")
        if !encodings.isEmpty {
            if !lengths.isEmpty { return .failure(.badRequest("Content-Length with Transfer-Encoding")) }
            if minorVersion == 0 { return .failure(.badRequest("Transfer-Encoding on HTTP/1.0")) }
            let codings = encodings.flatMap { $0.split(separator: 0x2C, omittingEmptySubsequences: false) }
                .map { Substring(String(decoding: $0, as: UTF8.self).lowercased()).trimmingCharacters(in: " \t") }
            if codings.contains(where: \.isEmpty) { return .failure(.badRequest("empty transfer coding")) }
            if codings.count > 1 && codings.allSatisfy({ $0 == "chunked" }) {
                return .failure(.badRequest("chunked applied more than once"))
            }
            guard codings.last == "chunked" else {
                return .failure(.notImplemented(String(codings.last ?? "")))
            }
            guard codings.count == 1 else {
                return .failure(.notImplemented(String(codings.first ?? "")))
            }
            return .success(.chunked)
        }
        guard !lengths.isEmpty else { return .success(.none) }
        var length: Int?
        for value in lengths.flatMap({ $0.split(separator: 0x2C, omittingEmptySubsequences: false) }) {
            let digits = value.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
            guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ (0x30...0x39).contains($0) }) else {
                return .failure(.badRequest("malformed Content-Length"))
            }
            let n = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            if let known = length, known != n { return .failure(.badRequest("differing Content-Length values")) }
            length = n
        }
        return .success(length == 0 ? .none : .contentLength(length!))
    }
}
