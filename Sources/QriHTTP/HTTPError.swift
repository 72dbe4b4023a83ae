/// Why a request cannot be served, and the status that says so. Every case closes the
/// connection after its answer: after a framing error the next request's start is unknown.
public enum HTTPError: Error, Equatable, Sendable {
    /// Malformed request line or header, obs-fold, bare CR or LF, missing Host on HTTP/1.1,
    /// ambiguous body length, bad chunking.
    case badRequest(String)
    /// Request line and headers larger than the configured bound.
    case headerTooLarge
    /// Body larger than the configured bound.
    case bodyTooLarge
    /// A transfer coding other than chunked.
    case notImplemented(String)
    /// HTTP/2 preface or a version other than 1.0 and 1.1.
    case versionNotSupported

    public var status: HTTPStatus {
        switch self {
        case .badRequest: return .badRequest
        case .headerTooLarge: return .headerFieldsTooLarge
        case .bodyTooLarge: return .contentTooLarge
        case .notImplemented: return .notImplemented
        case .versionNotSupported: return .httpVersionNotSupported
        }
    }

    /// A short, client-safe explanation.
    public var reason: String {
        switch self {
        case .badRequest(let why): return why
        case .headerTooLarge: return "request header too large"
        case .bodyTooLarge: return "request body too large"
        case .notImplemented(let coding): return "transfer coding not implemented: \(coding)"
        case .versionNotSupported: return "HTTP version not supported"
        }
    }
}
