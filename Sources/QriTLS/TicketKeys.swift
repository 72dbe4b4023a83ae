import CQriOpenSSL

/// The keys that encrypt and decrypt TLS session tickets, shared by every `TLSContext` of
/// the process, so a certificate reload does not end every resumption.
///
/// From TICKET_KEY_FILE (nginx's format: 80-byte keys, 16 name + 32 HMAC + 32 AES,
/// concatenated, newest first; every node of a cluster shares the file and resumes every
/// other's sessions), or, without one, a random key rotated every hour with the previous one
/// still accepted: forward secrecy without losing every resumption at rotation.
///
/// Thread-safe: handshakes on every loop read the keys (in C, under a read lock) while a
/// reload or rotation replaces them.
public final class TicketKeys: @unchecked Sendable {
    let store: UnsafeMutablePointer<cqri_ticket_keys>
    /// The random key in use and the previous one, newest first (random mode only).
    private var randomKeys: [[UInt8]] = []

    public static let keyBytes = Int(CQRI_TICKET_KEY_BYTES)
    public static let maximumKeys = Int(CQRI_MAX_TICKET_KEYS)

    public init() {
        guard let store = cqri_ticket_keys_new() else { fatalError("cannot allocate the ticket keys") }
        self.store = store
    }

    deinit { cqri_ticket_keys_free(store) }

    /// Splits a key file's bytes into keys; throws when it is empty, not a whole number of
    /// 80-byte keys, or holds more than `maximumKeys`.
    public static func parse(_ bytes: [UInt8]) throws(TLSError) -> [[UInt8]] {
        guard !bytes.isEmpty, bytes.count % keyBytes == 0 else {
            throw TLSError(plain: "\(bytes.count) bytes: expected one or more \(keyBytes)-byte keys (nginx's ssl_session_ticket_key format)")
        }
        guard bytes.count / keyBytes <= maximumKeys else {
            throw TLSError(plain: "\(bytes.count / keyBytes) keys: at most \(maximumKeys)")
        }
        return stride(from: 0, to: bytes.count, by: keyBytes).map { Array(bytes[$0..<$0 + keyBytes]) }
    }

    /// Reads `path` and uses its keys; on any error the keys in use stay. Returns how many.
    @discardableResult
    public func load(file path: String) throws(TLSError) -> Int {
        guard let bytes = KeyFile.read(path, limit: Self.keyBytes * Self.maximumKeys) else { throw TLSError(plain: "cannot read ticket key file \(path)") }
        let keys: [[UInt8]]
        do {
            keys = try Self.parse(bytes)
        } catch {
            throw TLSError(plain: "ticket key file \(path): \(error.description)")
        }
        use(keys)
        return keys.count
    }

    /// Makes a new random key the one that encrypts, keeping the previous random key for
    /// decryption only.
    public func rotateRandom() {
        var key = [UInt8](repeating: 0, count: Self.keyBytes)
        guard RAND_bytes(&key, Int32(key.count)) == 1 else { return }
        randomKeys = [key] + randomKeys.prefix(1)
        use(randomKeys)
    }

    private func use(_ keys: [[UInt8]]) {
        let flat = keys.flatMap { $0 }
        _ = flat.withUnsafeBufferPointer { cqri_ticket_keys_set(store, $0.baseAddress, Int32(keys.count)) }
    }
}
