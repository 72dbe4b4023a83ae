import CQriHiredis

/// One Redis reply (RESP2), copied out of hiredis's reply tree.
public enum RESPValue: Sendable, Equatable {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case array([RESPValue])
    case null
    case error(String)

    init(_ reply: UnsafePointer<redisReply>) {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            self = .string(r.str.map { Array(UnsafeRawBufferPointer(start: $0, count: r.len)) } ?? [])
        case REDIS_REPLY_STATUS:
            self = .status(r.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: r.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR:
            self = .error(r.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: r.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_INTEGER:
            self = .integer(Int64(r.integer))
        case REDIS_REPLY_ARRAY:
            self = .array((0..<r.elements).map { RESPValue(cqri_reply_element(reply, $0)) })
        default:
            self = .null
        }
    }

    /// The bytes of a bulk or status string.
    public var bytes: [UInt8]? {
        switch self {
        case .string(let b): return b
        case .status(let s): return Array(s.utf8)
        default: return nil
        }
    }

    public var text: String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

    public var array: [RESPValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var integer: Int64? {
        switch self {
        case .integer(let n): return n
        case .string(let b): return Int64(String(decoding: b, as: UTF8.self))
        default: return nil
        }
    }
}

/// Parses the replies in a byte stream from Redis, with hiredis's reader. Owned by one
/// connection; a protocol error is final (the connection must be dropped).
final class RESPReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        reader = redisReaderCreate()
        cqri_reader_keep_buffer(reader)
    }

    deinit { redisReaderFree(reader) }

    func feed(_ bytes: UnsafeRawBufferPointer) {
        _ = bytes.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
    }

    /// The next complete reply; nil when more bytes are needed.
    func next() throws(RedisError) -> RESPValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw RedisError.protocolError(String(cString: cqri_reader_errstr(reader)))
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return RESPValue(UnsafePointer(raw.assumingMemoryBound(to: redisReply.self)))
    }
}

/// Formats one command (binary-safe arguments) as RESP, with hiredis.
public enum RESPCommand {
    public static func format(_ arguments: [[UInt8]]) -> [UInt8] {
        // One contiguous copy, so that every argument has a stable pointer during the call.
        var joined: [UInt8] = [0]
        var offsets: [Int] = []
        var lengths: [Int] = []
        for argument in arguments {
            offsets.append(joined.count)
            lengths.append(argument.count)
            joined += argument
        }
        return joined.withUnsafeBytes { raw -> [UInt8] in
            let base = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            var pointers: [UnsafePointer<CChar>?] = offsets.map { UnsafePointer(base + $0) }
            var target: UnsafeMutablePointer<CChar>?
            let n = redisFormatCommandArgv(&target, Int32(arguments.count), &pointers, &lengths)
            defer { redisFreeCommand(target) }
            guard n > 0, let target else { return [] }
            return Array(UnsafeRawBufferPointer(start: target, count: Int(n)))
        }
    }
}

/// Why a Redis command got no reply.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The connection is down (or went down before the reply came).
    case unavailable(String)
    case protocolError(String)

    public var description: String {
        switch self {
        case .unavailable(let why): return "Redis unavailable: \(why)"
        case .protocolError(let why): return "Redis protocol error: \(why)"
        }
    }
}
