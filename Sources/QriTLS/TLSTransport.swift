import CQriOpenSSL
public import QriTransport
#if canImport(Glibc)
import Glibc
#endif

/// One TLS connection: an OpenSSL `SSL` over a non-blocking socket it owns — server side
/// from `TLSContext`, client side (the load generator's) from `TLSClientContext`.
///
/// Confined to one loop thread: OpenSSL's error queue is per thread, so each operation clears
/// it first and classifies the result right after, on the same thread.
public final class TLSTransport: Transport {
    private var ssl: OpaquePointer?
    public private(set) var fd: Int32
    /// Set once the connection failed (TLS or socket error): no close_notify may follow.
    private var broken = false
    /// Set once OpenSSL reported a TLS-level error (SSL_ERROR_SSL), not a socket one.
    private var tlsFailed = false
    private var handshakeDone = false
    /// The `TLSContext` or `TLSClientContext` this connection came from: what its callbacks
    /// read (the OCSP staple) must live as long as the connection, past a rotation.
    private let owner: AnyObject
    /// Server side: whether the `SSL` is still to be made from `owner` when the client's first
    /// bytes arrive. Until then the connection holds no TLS state at all (OpenSSL allocates
    /// tens of KB per `SSL` and handshake), so a client that connects and says nothing costs
    /// little.
    private var awaitingFirstBytes = false

    init(ssl: OpaquePointer, fd: Int32, owner: AnyObject) {
        self.ssl = ssl
        self.fd = fd
        self.owner = owner
        offeringH2 = false
    }

    /// Whether ALPN may select `h2` on this server-side connection.
    private let offeringH2: Bool

    init(context: TLSContext, fd: Int32, offeringH2: Bool) {
        owner = context
        self.fd = fd
        self.offeringH2 = offeringH2
        awaitingFirstBytes = true
    }

    deinit { close() }

    public func handshake() -> IOResult {
        if ssl == nil, awaitingFirstBytes, let context = owner as? TLSContext {
            awaitingFirstBytes = false
            guard let made = context.makeSSL(fd: fd, offeringH2: offeringH2) else { return .failed("SSL_new failed") }
            ssl = made
        }
        guard let ssl else { return .failed("closed") }
        ERR_clear_error()
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            handshakeDone = true
            return .done(0)
        }
        return classify(ssl, r)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        guard let ssl else { return .failed("closed") }
        ERR_clear_error()
        var count = 0
        if SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) == 1 { return .done(count) }
        return classify(ssl, 0)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        guard let ssl else { return .failed("closed") }
        ERR_clear_error()
        var count = 0
        if SSL_write_ex(ssl, bytes.baseAddress, bytes.count, &count) == 1 { return .done(count) }
        return classify(ssl, 0)
    }

    /// Whether ALPN selected `h2` (after the handshake).
    public var selectedH2: Bool {
        guard let ssl else { return false }
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length == 2 else { return false }
        return data[0] == UInt8(ascii: "h") && data[1] == UInt8(ascii: "2")
    }

    public var hasBufferedInput: Bool {
        guard let ssl else { return false }
        return SSL_has_pending(ssl) == 1
    }

    /// Whether the handshake resumed an earlier session.
    public var sessionReused: Bool {
        guard let ssl else { return false }
        return SSL_session_reused(ssl) == 1
    }

    /// How a session was resumed: a TLS 1.2 session id from the server's cache, or a ticket.
    public enum ResumptionKind: String, Sendable {
        case cache, ticket
    }

    /// Server side, once the handshake is done: how it resumed a session; nil for a full one.
    /// TLS 1.3 resumes with tickets only (the server sends stateless ones).
    public var resumption: ResumptionKind? {
        guard let ssl, SSL_session_reused(ssl) == 1 else { return nil }
        return cqri_SSL_decrypted_ticket(ssl) != 0 || SSL_version(ssl) >= TLS1_3_VERSION ? .ticket : .cache
    }

    /// For a client: the session to resume with next time, once the server has sent one (in
    /// TLS 1.3 the tickets arrive after the handshake, with the first reads); nil if none.
    ///
    /// A copy: OpenSSL marks a connection's own session not resumable when the connection is
    /// freed without a close_notify (`ssl_clear_bad_session`).
    public var session: TLSSession? {
        guard let ssl, let current = SSL_get_session(ssl), SSL_SESSION_is_resumable(current) == 1,
              let copy = SSL_SESSION_dup(current) else { return nil }
        return TLSSession(copy)
    }

    /// The negotiated protocol, e.g. "TLSv1.3".
    public var protocolVersion: String {
        guard let ssl, let name = SSL_get_version(ssl) else { return "?" }
        return String(cString: name)
    }

    public func shutdownOutput() {
        // Never after a fatal error or during the handshake (SSL_shutdown(3)).
        guard let ssl, !broken, handshakeDone else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    public func close() {
        awaitingFirstBytes = false
        if let ssl {
            // SSL_free without SSL_SENT_SHUTDOWN drops the session from the server cache
            // (ssl_clear_bad_session): only connections we had sent a close_notify on could
            // be resumed by session id. SPEC: session ids resume however the previous
            // connection ended, and RFC 5246 §7.2.1 allows it since TLS 1.1 — a peer's EOF,
            // a reset or a timeout says nothing against the session's keys. A TLS-level
            // failure (bad record MAC, a fatal alert) might: that session stays dropped
            // (OpenSSL drops it itself on a fatal alert; not marking covers the rest). A
            // handshake that never finished has no session to keep.
            if handshakeDone && !tlsFailed {
                SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN)
            }
            SSL_free(ssl)
            self.ssl = nil
        }
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    private func classify(_ ssl: OpaquePointer, _ result: Int32) -> IOResult {
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            broken = true
            let errno = errno
            ERR_clear_error()
            return errno == 0 ? .closed : .failed("socket error \(errno)")
        default:
            broken = true
            tlsFailed = true
            // With SSL_OP_IGNORE_UNEXPECTED_EOF an EOF without close_notify reads as a close.
            return .failed(TLSError.drainErrorQueue())
        }
    }
}
