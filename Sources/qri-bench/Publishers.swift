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

/// HTTP/1.1 POSTs, pipelined on one keep-alive connection: Qri's `POST /publish` (single
/// form bodies, or NDJSON batches) and `POST /backdoor` on the admin port (TLS or plain,
/// bearer token), or Nchan's publisher location (plain).
///
/// Requests are built as bytes and responses parsed as bytes: at 150k requests/s the
/// generator's own cost must stay well below the server's.
final class HTTPPublisher: BenchConnection, Publisher {
    enum Kind {
        /// `POST /publish` form fields peer, checksum, message.
        case qriPublish
        /// `POST /publish` with `Content-Type: application/x-ndjson`, `size` lines a request
        /// (a partial batch leaves at each flush: rated steps do not wait for a full one).
        case qriBatch(size: Int)
        /// `POST /backdoor` form fields type, message (a broadcast).
        case qriBackdoor
        /// `POST <template>` with the message as the raw body (Nchan).
        case rawBody(pathTemplate: String)
    }

    let kind: Kind
    let maxOutstanding: Int
    private(set) var outstanding = 0
    private(set) var answered = 0
    private(set) var errors = 0
    private(set) var lastError = ""
    /// Entries answered with an error inside a 202 batch answer.
    private(set) var entryErrors = 0
    private var input: [UInt8] = []
    private var request: [UInt8] = []
    private var body: [UInt8] = []
    private var batchCount = 0
    private let batchSize: Int
    /// "POST /publish HTTP/1.1\r\nHost: …\r\nAuthorization: …\r\nContent-Type: …\r\nContent-Length: "
    private let headPrefix: [UInt8]
    private let pathTemplate: (before: [UInt8], middle: [UInt8], after: [UInt8])?
    private let restOfHead: [UInt8]

    init(bench: Bench, fd: Int32, tls: TLSClientContext?, kind: Kind, token: String?, maxOutstanding: Int) throws(SystemError) {
        self.kind = kind
        self.maxOutstanding = maxOutstanding
        let authorization = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
        let host = "Host: \(bench.options.serverName)\r\n"
        switch kind {
        case .qriPublish:
            headPrefix = Array("POST /publish HTTP/1.1\r\n\(host)\(authorization)Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ".utf8)
            pathTemplate = nil
            batchSize = 1
        case .qriBatch(let size):
            headPrefix = Array("POST /publish HTTP/1.1\r\n\(host)\(authorization)Content-Type: application/x-ndjson\r\nContent-Length: ".utf8)
            pathTemplate = nil
            batchSize = max(size, 1)
        case .qriBackdoor:
            headPrefix = Array("POST /backdoor HTTP/1.1\r\n\(host)\(authorization)Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ".utf8)
            pathTemplate = nil
            batchSize = 1
        case .rawBody(let template):
            // "/pub?p={p}&s={s}": the path is before + peer + middle + checksum + after.
            let parts = template.split(separator: "{p}", maxSplits: 1, omittingEmptySubsequences: false)
            let second = parts.count == 2 ? parts[1].split(separator: "{s}", maxSplits: 1, omittingEmptySubsequences: false) : []
            if parts.count == 2 && second.count == 2 {
                pathTemplate = (Array("POST ".utf8) + Array(parts[0].utf8), Array(second[0].utf8), Array(second[1].utf8))
            } else {
                pathTemplate = (Array("POST \(template)".utf8), [], [])
            }
            headPrefix = Array(" HTTP/1.1\r\n\(host)\(authorization)Content-Type: text/plain\r\nContent-Length: ".utf8)
            batchSize = 1
        }
        restOfHead = Array("\r\n\r\n".utf8)
        try super.init(bench: bench, fd: fd, tls: tls)
    }

    var canPublish: Bool { phase == .ready && outstanding < maxOutstanding && pendingOutput < 1 << 20 }

    func publish(pair: Int?, message: [UInt8]) {
        switch kind {
        case .qriPublish:
            let names = bench.pairNames(pair ?? 0)
            body.removeAll(keepingCapacity: true)
            body += Self.peerField
            body += names.peer
            body += Self.checksumField
            body += names.checksum
            body += Self.messageField
            body += message
            send(path: nil)
        case .qriBatch:
            // {"peer":"u1","checksum":"c1","message":"…"}\n — the bench's names and stamps need no escapes.
            let names = bench.pairNames(pair ?? 0)
            body += Self.jsonPeer
            body += names.peer
            body += Self.jsonChecksum
            body += names.checksum
            body += Self.jsonMessage
            body += message
            body += Self.jsonEnd
            batchCount += 1
            if batchCount >= batchSize { sendBatch() }
        case .qriBackdoor:
            body.removeAll(keepingCapacity: true)
            body += Self.backdoorFields
            body += message
            send(path: nil)
        case .rawBody:
            let names = bench.pairNames(pair)
            body.removeAll(keepingCapacity: true)
            body += message
            send(path: names)
        }
    }

    /// Sends a partial batch, then writes.
    override func flush() {
        if batchCount > 0 { sendBatch() }
        super.flush()
    }

    private func sendBatch() {
        send(path: nil)
        body.removeAll(keepingCapacity: true)
        batchCount = 0
    }

    private func send(path names: (peer: [UInt8], checksum: [UInt8])?) {
        request.removeAll(keepingCapacity: true)
        if let pathTemplate {
            request += pathTemplate.before
            if let names {
                request += names.peer
                request += pathTemplate.middle
                request += names.checksum
            }
            request += pathTemplate.after
        }
        request += headPrefix
        Stamp.appendDecimal(UInt64(body.count), to: &request)
        request += restOfHead
        request += body
        queue(request)
        outstanding += 1
    }

    private static let peerField = Array("peer=".utf8)
    private static let checksumField = Array("&checksum=".utf8)
    private static let messageField = Array("&message=".utf8)
    private static let backdoorFields = Array("type=042&message=".utf8)
    private static let jsonPeer = Array(#"{"peer":""#.utf8)
    private static let jsonChecksum = Array(#"","checksum":""#.utf8)
    private static let jsonMessage = Array(#"","message":""#.utf8)
    private static let jsonEnd = Array("\"}\n".utf8)
    private static let errorKey = Array(#""error""#.utf8)

    override func didClose(reason: String) {
        if lastError.isEmpty { lastError = reason }
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        input.append(contentsOf: bytes)
        var consumed = 0
        while let used = parseResponse(from: consumed) {
            consumed += used
        }
        if consumed == input.count {
            input.removeAll(keepingCapacity: true)
        } else if consumed > 0 {
            input.removeFirst(consumed)
        }
        return !isClosed
    }

    /// Parses one complete response at `offset`; returns its length, nil if incomplete.
    private func parseResponse(from offset: Int) -> Int? {
        input.withUnsafeBufferPointer { buffer -> Int? in
            let n = buffer.count
            guard n - offset >= 12 else { return nil }
            // The head: status at offset+9, headers up to CRLFCRLF.
            var headEnd = -1
            var i = offset + 3
            while i < n {
                if buffer[i] == 0x0A && buffer[i - 1] == 0x0D && buffer[i - 2] == 0x0A && buffer[i - 3] == 0x0D { headEnd = i + 1; break }
                i += 1
            }
            guard headEnd > 0 else { return nil }
            var status = 0
            for j in (offset + 9)..<(offset + 12) where buffer[j] >= 0x30 && buffer[j] <= 0x39 {
                status = status * 10 + Int(buffer[j] - 0x30)
            }
            // Headers: Content-Length, Transfer-Encoding: chunked (case-insensitive names).
            var length = 0
            var chunked = false
            var line = offset
            while line < headEnd - 2 {
                var eol = line
                while eol < headEnd && buffer[eol] != 0x0D { eol += 1 }
                if Self.hasPrefix(buffer, line, eol, "content-length:") {
                    var k = line + 15
                    length = 0
                    while k < eol {
                        let c = buffer[k]
                        if c >= 0x30 && c <= 0x39 { length = length * 10 + Int(c - 0x30) }
                        k += 1
                    }
                } else if Self.hasPrefix(buffer, line, eol, "transfer-encoding:") {
                    chunked = true
                }
                line = eol + 2
            }
            var end = headEnd + length
            if chunked {
                // Bodies here are small: find the last chunk "0\r\n\r\n".
                var k = headEnd
                var found = -1
                while k + 4 < n + 0 {
                    if buffer[k] == 0x30 && (k == headEnd || buffer[k - 1] == 0x0A) && buffer[k + 1] == 0x0D && buffer[k + 2] == 0x0A
                        && buffer[k + 3] == 0x0D && buffer[k + 4] == 0x0A { found = k + 5; break }
                    k += 1
                }
                guard found > 0 else { return nil }
                end = found
            }
            guard end <= n else { return nil }
            outstanding -= 1
            answered += 1
            if status < 200 || status > 299 {
                errors += 1
                lastError = "status \(status): " + String(decoding: buffer[headEnd..<end].prefix(120), as: UTF8.self)
            } else if case .qriBatch = kind {
                let bad = Self.count(Self.errorKey, in: buffer, headEnd, end)
                if bad > 0 {
                    entryErrors += bad
                    errors += 1
                    lastError = "entry errors: " + String(decoding: buffer[headEnd..<end].prefix(120), as: UTF8.self)
                }
            }
            return end - offset
        }
    }

    private static func hasPrefix(_ b: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int, _ lowerPrefix: StaticString) -> Bool {
        let count = lowerPrefix.utf8CodeUnitCount
        guard to - from >= count else { return false }
        let p = lowerPrefix.utf8Start
        for i in 0..<count {
            var c = b[from + i]
            if c >= 0x41 && c <= 0x5A { c += 0x20 }
            if c != p[i] { return false }
        }
        return true
    }

    private static func count(_ needle: [UInt8], in b: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> Int {
        var found = 0
        var i = from
        while i + needle.count <= to {
            var match = true
            for j in 0..<needle.count where b[i + j] != needle[j] { match = false; break }
            if match { found += 1; i += needle.count } else { i += 1 }
        }
        return found
    }
}
