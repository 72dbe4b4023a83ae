import CQriOpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A server TLS configuration: certificate chain, key and settings, as one OpenSSL `SSL_CTX`.
///
/// Immutable once made (openssl-threads(7): a context must not change after use), so it is
/// safe to share between loop threads. Rotation makes a new one; connections keep a
/// reference to the context they started with, so the old one lives until they end.
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer
    /// The certificate's subject, one line, for logs.
    public let subject: String
    /// The certificate's notAfter, in seconds since the Unix epoch.
    public let notAfter: Int64
    /// What became of the OCSP response file; nil when none was given.
    public let ocsp: OCSPState?
    /// The response stapled while valid; the status callback reads it unretained.
    private let staple: OCSPStaple?
    /// The session-ticket keys the context's callback reads (nil: OpenSSL's own).
    private let ticketKeys: TicketKeys?

    // Mozilla "intermediate" (guidelines 6.0): AEAD with forward secrecy only.
    private static let tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    private static let tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

    /// Reads and checks `certificateFile` (PEM, leaf first, then its chain) and `keyFile`,
    /// and `ocspFile` (DER) if given. An unreadable file throws; an OCSP response that does
    /// not fit the certificate is not stapled, and `ocsp` says why.
    public init(certificateFile: String, keyFile: String, ocspFile: String? = nil,
                ticketKeys: TicketKeys? = nil) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new") }
        var staple: OCSPStaple?
        var ocsp: OCSPState?
        do throws(TLSError) {
            try Self.configure(ctx)
            if let ticketKeys, cqri_SSL_CTX_use_ticket_keys(ctx, ticketKeys.store) != 1 {
                throw TLSError("setting the ticket key callback")
            }
            guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
                throw TLSError("reading certificate \(certificateFile)")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError("reading key \(keyFile)")
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else {
                throw TLSError("key \(keyFile) does not match certificate \(certificateFile)")
            }
            if let ocspFile {
                (staple, ocsp) = try OCSPStaple.load(file: ocspFile, context: ctx)
                if let staple { OCSPStaple.install(staple, in: ctx) }
            }
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        context = ctx
        let certificate = SSL_CTX_get0_certificate(ctx)
        subject = Self.subjectLine(certificate)
        notAfter = certificate.flatMap { Self.epochSeconds(X509_get0_notAfter($0)) } ?? 0
        self.ocsp = ocsp
        self.staple = staple
        self.ticketKeys = ticketKeys
    }

    deinit { SSL_CTX_free(context) }

    private static func configure(_ ctx: OpaquePointer) throws(TLSError) {
        guard cqri_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1,
              cqri_SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 else {
            throw TLSError("setting protocol versions")
        }
        SSL_CTX_set_options(ctx, cqri_SSL_OP_NO_RENEGOTIATION() | cqri_SSL_OP_NO_COMPRESSION()
            | cqri_SSL_OP_IGNORE_UNEXPECTED_EOF())
        guard SSL_CTX_set_cipher_list(ctx, tls12Ciphers) == 1,
              SSL_CTX_set_ciphersuites(ctx, tls13Suites) == 1 else {
            throw TLSError("setting ciphers")
        }
        // X25519MLKEM768 is unknown to OpenSSL 3.0; fall back to the classic groups there.
        if cqri_SSL_CTX_set1_groups_list(ctx, "X25519MLKEM768:X25519:prime256v1:secp384r1") != 1 {
            ERR_clear_error()
            guard cqri_SSL_CTX_set1_groups_list(ctx, "X25519:prime256v1:secp384r1") == 1 else {
                throw TLSError("setting groups")
            }
        }
        // Most SSE connections are idle: releasing their buffers saves ~34 KB each.
        _ = cqri_SSL_CTX_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
            | SSL_MODE_RELEASE_BUFFERS))
        _ = cqri_SSL_CTX_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_SERVER))
        _ = cqri_SSL_CTX_sess_set_cache_size(ctx, 20_000)
        let sessionContext: [UInt8] = Array("qri".utf8)
        _ = SSL_CTX_set_session_id_context(ctx, sessionContext, UInt32(sessionContext.count))
        // Marks ticket resumptions, so that `TLSTransport.resumption` can tell them from ids.
        guard cqri_SSL_CTX_mark_ticket_resumptions(ctx) == 1 else { throw TLSError("setting the ticket callback") }
        cqri_SSL_CTX_use_h2_alpn(ctx, Self.h2Index)
    }

    private static func subjectLine(_ certificate: OpaquePointer?) -> String {
        guard let certificate, let name = X509_get_subject_name(certificate),
              let line = X509_NAME_oneline(name, nil, 0) else { return "?" }
        defer { cqri_OPENSSL_free(line) }
        return String(cString: line)
    }

    /// An ASN.1 time in seconds since the Unix epoch; nil when absent or malformed.
    static func epochSeconds(_ time: UnsafePointer<ASN1_TIME>?) -> Int64? {
        guard let time else { return nil }
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1 else { return nil }
        return Int64(timegm(&parts))
    }

    /// A server-side connection over the connected, non-blocking socket `fd`, which it owns.
    /// Its TLS state is made by its first `handshake()`, when the client has sent something.
    /// - Parameter offeringH2: whether ALPN may select `h2` (the public listener); otherwise
    ///   only `http/1.1` is selected.
    public func makeConnection(fd: Int32, offeringH2: Bool = false) -> TLSTransport {
        TLSTransport(context: self, fd: fd, offeringH2: offeringH2)
    }

    /// The ex_data index that marks an `SSL` whose ALPN may select `h2`.
    private static let h2Index = cqri_SSL_get_ex_new_index()

    func makeSSL(fd: Int32, offeringH2: Bool) -> OpaquePointer? {
        ERR_clear_error()
        guard let ssl = SSL_new(context) else {
            ERR_clear_error()
            return nil
        }
        if offeringH2 { cqri_SSL_offer_h2(ssl, Self.h2Index) }
        SSL_set_fd(ssl, fd)
        SSL_set_accept_state(ssl)
        return ssl
    }
}
