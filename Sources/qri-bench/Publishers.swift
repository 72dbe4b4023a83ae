import QriLoop
import QriTLS

/// Where messages enter the server under test.
protocol Publisher: AnyObject {
    /// Whether it can take more now (connected, output and pipeline not full).
    var canPublish: Bool { get }
    var isClosed: Bool { get }
    /// Queues one message for `pair` (nil: a broadcast to every stream).
    func publish(pair: Int?, message: [UInt8])
    /// Writes what was queued.
    func flush()
    /// Requests answered with an error status (HTTP publishers).
    var errors: Int { get }
    var lastError: String { get }
}

/// The qri-py wire format over the ingest port: BER `SEQUENCE { peer, checksum, message
/// OCTET STRING }` values back to back on one plain TCP connection, no replies.
final class IngestPublisher: BenchConnection, Publisher {
    private var frame: [UInt8] = []
    private(set) var closeReason = ""
    var errors: Int { 0 }
    var lastError: String { closeReason }

    var canPublish: Bool { phase == .ready && pendingOutput < 1 << 20 }

    func publish(pair: Int?, message: [UInt8]) {
        let names = bench.pairNames(pair ?? 0)
        frame.removeAll(keepingCapacity: true)
        let inner = Self.tlvSize(names.peer.count) + Self.tlvSize(names.checksum.count) + Self.tlvSize(message.count)
        frame.append(0x30)
        Self.appendLength(inner, to: &frame)
        for field in [names.peer, names.checksum, message] {
            frame.append(0x04)
            Self.appendLength(field.count, to: &frame)
            frame.append(contentsOf: field)
        }
        queue(frame)
    }

    override func didClose(reason: String) { closeReason = reason }

    static func tlvSize(_ n: Int) -> Int { 1 + lengthSize(n) + n }
    static func lengthSize(_ n: Int) -> Int { n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 4 }

    static func appendLength(_ n: Int, to out: inout [UInt8]) {
        switch lengthSize(n) {
        case 1: out.append(UInt8(n))
        case 2: out += [0x81, UInt8(n)]
        case 3: out += [0x82, UInt8(n >> 8), UInt8(n & 0xFF)]
        default: out += [0x83, UInt8(n >> 16), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)]
        }
    }
}

/// HTTP/1.1 POSTs, pipelined on one keep-alive connection: Qri's `POST /publish` and
/// `POST /backdoor` on the admin port (TLS, bearer token), or Nchan's publisher location.
final class HTTPPublisher: BenchConnection, Publisher {
    enum Kind {
        /// `POST /publish` form fields peer, checksum, message.
        case qriPublish
        /// `POST /backdoor` form fields type, message (a broadcast).
        case qriBackdoor
        /// `POST <template>` with the message as the raw body (Nchan).
        case rawBody(pathTemplate: String)
    }

    let kind: Kind
    let maxOutstanding: Int
    private let authorization: String
    private(set) var outstanding = 0
    private(set) var answered = 0
    private(set) var errors = 0
    private(set) var lastError = ""
    private var input: [UInt8] = []
    private var request: [UInt8] = []

    init(bench: Bench, fd: Int32, tls: TLSClientContext?, kind: Kind, token: String?, maxOutstanding: Int) throws(SystemError) {
        self.kind = kind
        self.maxOutstanding = maxOutstanding
        authorization = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
        try super.init(bench: bench, fd: fd, tls: tls)
    }

    var canPublish: Bool { phase == .ready && outstanding < maxOutstanding && pendingOutput < 1 << 20 }

    func publish(pair: Int?, message: [UInt8]) {
        let path: String
        var body: [UInt8] = []
        let contentType: String
        switch kind {
        case .qriPublish:
            let names = bench.pairNames(pair ?? 0)
            path = "/publish"
            body = Array("peer=".utf8) + names.peer + Array("&checksum=".utf8) + names.checksum + Array("&message=".utf8) + message
            contentType = "application/x-www-form-urlencoded"
        case .qriBackdoor:
            path = "/backdoor"
            body = Array("type=042&message=".utf8) + message
            contentType = "application/x-www-form-urlencoded"
        case .rawBody(let template):
            let names = bench.pairNames(pair)
            path = template.replacingOccurrences(of: "{p}", with: String(decoding: names.peer, as: UTF8.self))
                .replacingOccurrences(of: "{s}", with: String(decoding: names.checksum, as: UTF8.self))
            body = message
            contentType = "text/plain"
        }
        request.removeAll(keepingCapacity: true)
        request += Array("POST \(path) HTTP/1.1\r\nHost: \(bench.options.serverName)\r\n\(authorization)Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        request += body
        queue(request)
        outstanding += 1
    }

    override func didClose(reason: String) {
        if lastError.isEmpty { lastError = reason }
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        input.append(contentsOf: bytes)
        var consumed = 0
        while let used = parseResponse(from: consumed) {
            consumed += used
        }
        if consumed > 0 { input.removeFirst(consumed) }
        return !isClosed
    }

    /// Parses one complete response at `offset`; returns its length, nil if incomplete.
    private func parseResponse(from offset: Int) -> Int? {
        let n = input.count
        guard n - offset >= 12 else { return nil }
        var headEnd = -1
        var i = offset + 3
        while i < n {
            if input[i] == 0x0A && input[i - 1] == 0x0D && input[i - 2] == 0x0A && input[i - 3] == 0x0D { headEnd = i + 1; break }
            i += 1
        }
        guard headEnd > 0 else { return nil }
        let head = String(decoding: input[offset..<headEnd], as: UTF8.self)
        let status = Int(head.dropFirst(9).prefix(3)) ?? 0
        var length = 0
        var chunked = false
        for line in head.split(separator: "\r\n").dropFirst() {
            let lower = line.lowercased()
            if lower.hasPrefix("content-length:") { length = Int(lower.dropFirst(15).trimmingCharacters(in: " ")) ?? 0 }
            if lower.hasPrefix("transfer-encoding:") && lower.contains("chunked") { chunked = true }
        }
        var end = headEnd + length
        if chunked {
            var decoder = ChunkedDecoder()
            var used = 0
            let ok = input[headEnd...].withUnsafeBytes { raw -> Bool in
                // Feed byte by byte until the last chunk: bodies here are tiny.
                for j in 0..<raw.count {
                    if !decoder.feed(UnsafeRawBufferPointer(rebasing: raw[j..<(j + 1)]), { _ in }) { return false }
                    if decoder.finished { used = j + 1; return true }
                }
                return true
            }
            guard ok else { close(reason: "bad chunked response"); return nil }
            guard decoder.finished else { return nil }
            // A last chunk is followed by an empty trailer line.
            guard headEnd + used + 2 <= n else { return nil }
            end = headEnd + used + 2
        }
        guard end <= n else { return nil }
        outstanding -= 1
        answered += 1
        if status < 200 || status > 299 {
            errors += 1
            lastError = "status \(status): " + String(decoding: input[headEnd..<end].prefix(120), as: UTF8.self)
        }
        return end - offset
    }
}

private extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

private extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
