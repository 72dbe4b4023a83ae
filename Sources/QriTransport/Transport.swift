/// The outcome of one non-blocking transport operation.
public enum IOResult: Equatable, Sendable {
    /// Done; for reads and writes, how many bytes (a read never reports 0 here).
    case done(Int)
    /// Retry when the socket is readable.
    case wantRead
    /// Retry when the socket is writable.
    case wantWrite
    /// The peer closed the connection in an orderly way.
    case closed
    /// The connection is broken; the text says why, for logs.
    case failed(String)
}

/// A byte stream over a connected socket: plain TCP or TLS. Owns the socket.
///
/// Used from one loop thread only. After `.wantRead`/`.wantWrite` from `write`, the caller
/// retries with the same bytes and at least the same length (OpenSSL's rule).
public protocol Transport: AnyObject {
    var fd: Int32 { get }
    /// Advances the handshake; `.done` once it has completed. Plain TCP is done at once.
    func handshake() -> IOResult
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult
    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult
    /// Whether bytes are already decrypted and waiting: they will not wake the poller.
    var hasBufferedInput: Bool { get }
    /// Starts an orderly close: TLS close_notify, or a TCP half-close. Best effort.
    func shutdownOutput()
    /// Closes the socket. Idempotent.
    func close()
}
