/// Bytes waiting to be written to a `Transport`, and the one rule of writing them: after
/// `.wantWrite` or `.wantRead`, the next write repeats the same bytes and length (OpenSSL's
/// retry rule). New bytes may be appended meanwhile; they go out after the retried ones.
///
/// Owned by one connection, used on its loop's thread.
public struct OutputQueue {
    /// Unsent bytes are `bytes[sent...]`.
    private var bytes: [UInt8] = []
    private var sent = 0
    /// The length of a write that must be retried as it was, if any.
    public private(set) var retryLength: Int?

    /// What one `write(to:)` ended with.
    public enum Outcome: Equatable {
        /// Everything was written.
        case drained
        /// Call again when the socket is writable.
        case wantWrite
        /// Call again when the socket is readable.
        case wantRead
        case closed
        case failed(String)
    }

    public init() {}

    public var pendingCount: Int { bytes.count - sent }
    public var isEmpty: Bool { sent == bytes.count }

    public mutating func append(_ more: [UInt8]) {
        if bytes.isEmpty {
            bytes = more  // shares the caller's buffer until the next append
        } else {
            bytes.append(contentsOf: more)
        }
    }

    public mutating func append(_ more: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: more)
    }

    /// Writes until drained or the transport cannot take more.
    /// - Parameter keepingCapacityUpTo: once drained, keep a buffer of at most this capacity
    ///   for the next bytes; a larger one is given back (most idle streams hold none).
    public mutating func write(to transport: any Transport, keepingCapacityUpTo: Int = 0) -> Outcome {
        while sent < bytes.count {
            let length = retryLength ?? (bytes.count - sent)
            let start = sent
            let result = bytes.withUnsafeBytes { transport.write(UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)])) }
            switch result {
            case .done(let n):
                sent += n
                retryLength = nil
            case .wantWrite:
                retryLength = length
                dropSentPrefix()
                return .wantWrite
            case .wantRead:
                retryLength = length
                dropSentPrefix()
                return .wantRead
            case .closed:
                return .closed
            case .failed(let why):
                return .failed(why)
            }
        }
        bytes.removeAll(keepingCapacity: bytes.capacity <= keepingCapacityUpTo)
        sent = 0
        return .drained
    }

    /// Bytes held, sent or not: what this queue costs beyond its capacity slack.
    public var heldCount: Int { bytes.count }

    /// Forgets bytes already written: a client that reads almost as fast as events come
    /// never lets the queue drain, and the sent prefix would otherwise grow without bound.
    /// Done once the prefix is 64 KiB and half the unsent part, so that the unsent bytes are
    /// moved at most twice per byte written, and the queue holds at most half again what is
    /// unsent (or 64 KiB). The retried write, if any, starts at the front afterwards
    /// (OpenSSL is told the buffer may move).
    private mutating func dropSentPrefix() {
        guard sent >= Self.compactionThreshold, sent * 2 >= bytes.count - sent else { return }
        bytes.removeFirst(sent)
        sent = 0
    }

    private static let compactionThreshold = 64 << 10

    /// Drops everything queued (the connection is closing).
    public mutating func removeAll() {
        bytes = []
        sent = 0
        retryLength = nil
    }
}
