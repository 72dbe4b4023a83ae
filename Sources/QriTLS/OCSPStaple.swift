import CQriOpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A DER OCSP response for the certificate of one `TLSContext` (`--ocsp-file`), stapled to
/// each handshake that asks for one while now is within [thisUpdate − 5 min, nextUpdate +
/// 5 min) — checked per handshake, so a response that expires while the process runs stops
/// being stapled. Like nginx's `ssl_stapling_file`, the file is trusted as given: its
/// signature is the client's to check.
///
/// Immutable, shared by the loop threads through the context's status callback.
final class OCSPStaple: @unchecked Sendable {
    /// Clock skew allowed on either side of the window.
    static let skew: Int64 = 300
    /// Larger files are not OCSP responses for one certificate.
    static let maximumBytes = 1 << 20

    let der: [UInt8]
    let thisUpdate: Int64
    let nextUpdate: Int64

    init(der: [UInt8], thisUpdate: Int64, nextUpdate: Int64) {
        self.der = der
        self.thisUpdate = thisUpdate
        self.nextUpdate = nextUpdate
    }

    func isValid(at now: Int64) -> Bool {
        thisUpdate - Self.skew <= now && now < nextUpdate + Self.skew
    }

    /// Staples a copy of the response to `ssl` if it is valid now (OpenSSL frees the copy).
    func staple(to ssl: OpaquePointer) -> Int32 {
        guard isValid(at: Int64(time(nil))) else { return SSL_TLSEXT_ERR_NOACK }
        let copy = der.withUnsafeBytes { cqri_OPENSSL_memdup($0.baseAddress, $0.count) }
        guard let copy else { return SSL_TLSEXT_ERR_NOACK }
        guard cqri_SSL_set_tlsext_status_ocsp_resp(ssl, copy.assumingMemoryBound(to: UInt8.self), der.count) == 1 else {
            cqri_OPENSSL_free(copy)
            return SSL_TLSEXT_ERR_NOACK
        }
        return SSL_TLSEXT_ERR_OK
    }

    /// Installs `staple` as the status callback of `ctx`. The callback gets the staple
    /// unretained: the `TLSContext` holds it, and every connection holds its context.
    static func install(_ staple: OCSPStaple, in ctx: OpaquePointer) {
        _ = cqri_SSL_CTX_set_tlsext_status_arg(ctx, Unmanaged.passUnretained(staple).toOpaque())
        _ = cqri_SSL_CTX_set_tlsext_status_cb(ctx) { ssl, arg in
            guard let ssl, let arg else { return SSL_TLSEXT_ERR_NOACK }
            return Unmanaged<OCSPStaple>.fromOpaque(arg).takeUnretainedValue().staple(to: ssl)
        }
    }

    // MARK: Loading

    /// Reads `file` and checks it against the certificate of `ctx`. Throws only when the
    /// file cannot be read; a response that does not fit comes back as `.unusable`.
    static func load(file: String, context ctx: OpaquePointer) throws(TLSError) -> (OCSPStaple?, OCSPState) {
        let der = try read(file)
        do throws(Unfit) {
            let staple = try check(der, context: ctx)
            return (staple, .loaded(thisUpdate: staple.thisUpdate, nextUpdate: staple.nextUpdate))
        } catch {
            ERR_clear_error()
            return (nil, .unusable(error.reason))
        }
    }

    /// Why a response is not stapled.
    struct Unfit: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }

    private static func read(_ file: String) throws(TLSError) -> [UInt8] {
        ERR_clear_error()
        guard let bio = BIO_new_file(file, "rb") else { throw TLSError("reading OCSP response file \(file)") }
        defer { BIO_free(bio) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while bytes.count <= maximumBytes {
            let n = BIO_read(bio, &chunk, Int32(chunk.count))
            if n <= 0 { break }
            bytes += chunk[..<Int(n)]
        }
        return bytes
    }

    private static func check(_ der: [UInt8], context ctx: OpaquePointer) throws(Unfit) -> OCSPStaple {
        guard !der.isEmpty else { throw Unfit("empty file") }
        guard der.count <= maximumBytes else { throw Unfit("larger than \(maximumBytes) bytes") }
        guard let leaf = SSL_CTX_get0_certificate(ctx) else { throw Unfit("no certificate") }
        let response = der.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            var p = buffer.baseAddress
            let parsed = d2i_OCSP_RESPONSE(nil, &p, buffer.count)
            if let parsed, p != buffer.baseAddress.map({ $0 + buffer.count }) {
                OCSP_RESPONSE_free(parsed)
                return nil
            }
            return parsed
        }
        guard let response else { throw Unfit("not a DER OCSP response") }
        defer { OCSP_RESPONSE_free(response) }
        let status = OCSP_response_status(response)
        guard status == OCSP_RESPONSE_STATUS_SUCCESSFUL else {
            throw Unfit("response status \(String(cString: OCSP_response_status_str(Int(status))))")
        }
        guard let basic = OCSP_response_get1_basic(response) else { throw Unfit("no basic response") }
        defer { OCSP_BASICRESP_free(basic) }
        guard let single = singleResponse(in: basic, leaf: leaf, issuer: issuer(of: leaf, in: ctx)) else {
            throw Unfit("no response for the certificate in use (serial \(serialText(leaf)))")
        }
        var reason: Int32 = 0
        var revoked: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        var thisUpdate: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        var nextUpdate: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        let certStatus = OCSP_single_get0_status(single, &reason, &revoked, &thisUpdate, &nextUpdate)
        guard certStatus == V_OCSP_CERTSTATUS_GOOD else {
            throw Unfit("certificate status \(String(cString: OCSP_cert_status_str(Int(certStatus))))")
        }
        // RFC 6960 lets a responder leave nextUpdate out ("newer information is always
        // available"); such a response has no end to staple it until, so it is not stapled.
        guard let from = TLSContext.epochSeconds(thisUpdate) else { throw Unfit("no thisUpdate") }
        guard let until = TLSContext.epochSeconds(nextUpdate) else { throw Unfit("no nextUpdate") }
        guard from < until else { throw Unfit("nextUpdate is not after thisUpdate") }
        return OCSPStaple(der: der, thisUpdate: from, nextUpdate: until)
    }

    /// The leaf's issuer, when the chain file carried it (it usually does: the intermediate).
    private static func issuer(of leaf: OpaquePointer, in ctx: OpaquePointer) -> OpaquePointer? {
        guard let chain = cqri_SSL_CTX_get0_chain_certs(ctx) else { return nil }
        for i in 0..<cqri_sk_X509_num(chain) {
            if let candidate = cqri_sk_X509_value(chain, i), X509_check_issued(candidate, leaf) == X509_V_OK {
                return candidate
            }
        }
        return nil
    }

    /// The single response for `leaf`. With the issuer from the chain, its whole CertID must
    /// match (OCSP_cert_to_id, in the hash the responder used): serial, issuer name hash and
    /// issuer key hash. Without it (a certificate file holding the leaf alone) the serial and
    /// the issuer name hash must match — the key hash cannot be checked without the issuer.
    private static func singleResponse(in basic: OpaquePointer, leaf: OpaquePointer, issuer: OpaquePointer?) -> OpaquePointer? {
        for i in 0..<OCSP_resp_count(basic) {
            guard let single = OCSP_resp_get0(basic, i), let id = OCSP_SINGLERESP_get0_id(single) else { continue }
            var nameHash: UnsafeMutablePointer<ASN1_OCTET_STRING>?
            var algorithm: OpaquePointer?
            var serial: UnsafeMutablePointer<ASN1_INTEGER>?
            guard OCSP_id_get0_info(&nameHash, &algorithm, nil, &serial, id) == 1,
                  let serial, ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(leaf)) == 0,
                  let digest = EVP_get_digestbyname(OBJ_nid2sn(OBJ_obj2nid(algorithm))) else { continue }
            if let issuer {
                guard let expected = OCSP_cert_to_id(digest, leaf, issuer) else { continue }
                defer { OCSP_CERTID_free(expected) }
                if OCSP_id_cmp(expected, id) == 0 { return single }
            } else if let nameHash {
                var hash = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
                var length: UInt32 = 0
                guard X509_NAME_digest(X509_get_issuer_name(leaf), digest, &hash, &length) == 1 else { continue }
                let given = UnsafeBufferPointer(start: ASN1_STRING_get0_data(nameHash), count: Int(ASN1_STRING_length(nameHash)))
                if given.elementsEqual(hash[..<Int(length)]) { return single }
            }
        }
        return nil
    }

    private static func serialText(_ certificate: OpaquePointer) -> String {
        guard let bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nil) else { return "?" }
        defer { BN_free(bn) }
        guard let hex = BN_bn2hex(bn) else { return "?" }
        defer { cqri_OPENSSL_free(hex) }
        return String(cString: hex)
    }
}

/// What became of `--ocsp-file` when a context was made.
public enum OCSPState: Sendable {
    /// The response fits the certificate; it is stapled while now is within the window.
    case loaded(thisUpdate: Int64, nextUpdate: Int64)
    /// The file was read but is not stapled, for this reason.
    case unusable(String)

    /// Whether a handshake now gets the response, and a phrase for the log saying so.
    public func summary(now: Int64) -> (stapled: Bool, text: String) {
        switch self {
        case .unusable(let reason):
            return (false, "not stapled: \(reason)")
        case .loaded(let from, let until):
            let skew = OCSPStaple.skew
            if now < from - skew {
                return (false, "not stapled yet: thisUpdate is \(utc(from)), nextUpdate \(utc(until))")
            }
            if now >= until + skew { return (false, "not stapled: expired at nextUpdate \(utc(until))") }
            return (true, "stapled until nextUpdate \(utc(until))")
        }
    }
}

/// `seconds` since the epoch as ISO 8601 UTC, e.g. 2026-11-30T06:00:00Z.
private func utc(_ seconds: Int64) -> String {
    var t = time_t(seconds)
    var parts = tm()
    guard gmtime_r(&t, &parts) != nil else { return "\(seconds)" }
    var buffer = [CChar](repeating: 0, count: 32)
    let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
    return n > 0 ? buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : "\(seconds)"
}
