import CQriOpenSSL
public import QriTransport
#if canImport(Glibc)
import Glibc
#endif

/// A client TLS configuration as one OpenSSL `SSL_CTX`: TLS 1.2–1.3, ALPN `http/1.1`, and
/// either a CA file to verify the server against or no verification at all (loopback
/// benchmarks against a self-signed certificate).
///
/// Used by `qri-bench`; immutable once made, so it may be shared between threads.
public final class TLSClientContext: @unchecked Sendable {
    let context: OpaquePointer
    /// The name sent as SNI and, when verifying, checked against the certificate.
    public let serverName: String?

    /// - Parameters:
    ///   - caFile: PEM file of trusted certificates; nil skips verification.
    ///   - serverName: SNI and the host name to verify; nil sends no SNI.
    ///   - tls13Only: offer TLS 1.3 only.
    ///   - systemCAs: with no `caFile`, verify against the system's CA store instead of not
    ///     at all (Redis over TLS); `alpn` false sends no ALPN (Redis speaks no HTTP).
    public init(caFile: String?, serverName: String?, tls13Only: Bool = false,
                systemCAs: Bool = false, alpn: Bool = true) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError("SSL_CTX_new") }
        do throws(TLSError) {
            guard cqri_SSL_CTX_set_min_proto_version(ctx, tls13Only ? TLS1_3_VERSION : TLS1_2_VERSION) == 1,
                  cqri_SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 else {
                throw TLSError("setting protocol versions")
            }
            SSL_CTX_set_options(ctx, cqri_SSL_OP_NO_RENEGOTIATION() | cqri_SSL_OP_NO_COMPRESSION()
                | cqri_SSL_OP_IGNORE_UNEXPECTED_EOF())
            // A client holding tens of thousands of idle streams wants the same saving as
            // the server: no TLS buffers while nothing is in flight.
            _ = cqri_SSL_CTX_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                | SSL_MODE_RELEASE_BUFFERS))
            // Sessions are kept by the caller (`TLSTransport.session`), not by a cache.
            _ = cqri_SSL_CTX_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_OFF))
            if alpn {
                let protocols: [UInt8] = [8] + Array("http/1.1".utf8)
                guard SSL_CTX_set_alpn_protos(ctx, protocols, UInt32(protocols.count)) == 0 else { throw TLSError("setting ALPN") }
            }
            if systemCAs && caFile == nil {
                guard SSL_CTX_set_default_verify_paths(ctx) == 1 else { throw TLSError("reading the system CA store") }
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
            } else if let caFile {
                guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                    throw TLSError("reading CA file \(caFile)")
                }
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
            } else {
                SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
            }
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        context = ctx
        self.serverName = serverName
    }

    deinit { SSL_CTX_free(context) }

    /// A client connection over the connected (or connecting), non-blocking socket `fd`,
    /// which it owns. With `session`, the handshake offers it for resumption.
    public func makeConnection(fd: Int32, session: TLSSession? = nil) -> TLSTransport? {
        guard let ssl = SSL_new(context) else {
            ERR_clear_error()
            return nil
        }
        SSL_set_fd(ssl, fd)
        SSL_set_connect_state(ssl)
        if let serverName {
            _ = cqri_SSL_set_tlsext_host_name(ssl, serverName)
            if SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER != 0 {
                // An address is checked against the certificate's IP entries, a name
                // against its DNS entries.
                if serverName.contains(":") || serverName.allSatisfy({ $0.isNumber || $0 == "." }) {
                    _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
                } else {
                    _ = SSL_set1_host(ssl, serverName)
                }
            }
        }
        if let session { _ = SSL_set_session(ssl, session.session) }
        return TLSTransport(ssl: ssl, fd: fd, owner: self)
    }
}

/// A TLS session a client may offer again to resume (a TLS 1.3 ticket or a 1.2 session).
public final class TLSSession: @unchecked Sendable {
    let session: OpaquePointer
    init(_ session: OpaquePointer) { self.session = session }
    /// Whether the server sent a ticket for it (TLS 1.3 resumes with tickets only).
    public var hasTicket: Bool { SSL_SESSION_has_ticket(session) == 1 }
    deinit { SSL_SESSION_free(session) }
}
