import CQriOpenSSL

/// A failed OpenSSL operation: what was being done and OpenSSL's error queue, as one line.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ what: String) {
        description = "\(what): \(Self.drainErrorQueue())"
    }

    /// An error that OpenSSL did not report (a file of the wrong size).
    init(plain what: String) {
        description = what
    }

    /// Empties this thread's OpenSSL error queue into one line.
    static func drainErrorQueue() -> String {
        var parts: [String] = []
        var buffer = [CChar](repeating: 0, count: 256)
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            ERR_error_string_n(code, &buffer, buffer.count)
            parts.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        return parts.isEmpty ? "no OpenSSL error reported" : parts.joined(separator: "; ")
    }
}
