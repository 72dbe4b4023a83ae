import CQriOpenSSL

/// Reads a key file (ticket keys) through OpenSSL's file BIO, as OpenSSL reads certificates
/// and keys: QriTLS needs no module of the event loop for it.
enum KeyFile {
    /// The bytes of `path`; nil when it cannot be opened. Stops after a little more than
    /// `limit` bytes, so the caller can tell an oversized file without reading all of it.
    static func read(_ path: String, limit: Int) -> [UInt8]? {
        guard let bio = BIO_new_file(path, "rb") else {
            ERR_clear_error()
            return nil
        }
        defer { BIO_free(bio) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= limit {
            let n = BIO_read(bio, &chunk, Int32(chunk.count))
            if n <= 0 { break }
            bytes += chunk[..<Int(n)]
        }
        ERR_clear_error()
        return bytes
    }
}
