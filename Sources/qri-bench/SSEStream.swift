import QriLoop
import QriTLS
#if canImport(Glibc)
import Glibc
#endif

/// The payload of a timed message: `b:<send time, monotonic ns>:<step>:<seq>:` then padding.
/// Sender and receiver are the same process, so the monotonic clock is shared.
struct Stamp {
    var sentAt: UInt64
    var step: Int
    var seq: Int

    static func append(_ stamp: Stamp, paddedTo size: Int, to out: inout [UInt8]) {
        let start = out.count
        out.append(0x62) // b
        out.append(0x3A)
        appendDecimal(stamp.sentAt, to: &out)
        out.append(0x3A)
        appendDecimal(UInt64(stamp.step), to: &out)
        out.append(0x3A)
        appendDecimal(UInt64(stamp.seq), to: &out)
        out.append(0x3A)
        while out.count - start < size { out.append(0x78) } // x
    }

    static func appendDecimal(_ value: UInt64, to out: inout [UInt8]) {
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            out.append(UInt8(0x30 + (value / divisor) % 10))
            divisor /= 10
        }
    }

    /// Parses a stamp at the start of an event's data; nil for other data (a `Tick`).
    static func parse(_ p: UnsafePointer<UInt8>, _ count: Int) -> Stamp? {
        guard count > 2, p[0] == 0x62, p[1] == 0x3A else { return nil }
        var i = 2
        var fields: (UInt64, UInt64, UInt64) = (0, 0, 0)
        for f in 0..<3 {
            var value: UInt64 = 0
            var any = false
            while i < count, p[i] >= 0x30, p[i] <= 0x39 {
                value = value &* 10 &+ UInt64(p[i] - 0x30)
                i += 1
                any = true
            }
            guard any, i < count, p[i] == 0x3A else { return nil }
            i += 1
            switch f {
            case 0: fields.0 = value
            case 1: fields.1 = value
            default: fields.2 = value
            }
        }
        return Stamp(sentAt: fields.0, step: Int(fields.1), seq: Int(fields.2))
    }
}

/// An incremental Server-Sent-Events reader: finds event boundaries and the stamp at the
/// start of each event's data. Lines split across reads are carried over.
struct SSEParser {
    /// The newest `id:` and `retry:` fields (a reconnecting stream resumes with them).
    private(set) var lastID: [UInt8] = []
    private(set) var retryMilliseconds: Int?
    private var carry: [UInt8] = []
    private var hasData = false
    private var stamp: Stamp?

    /// Feeds body bytes; calls `onEvent` with each complete event's stamp (nil: untimed).
    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ onEvent: (Stamp?) -> Void) {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let n = bytes.count
        var start = 0
        while start < n {
            guard let nl = memchr(base + start, 0x0A, n - start) else {
                carry.append(contentsOf: UnsafeBufferPointer(start: base + start, count: n - start))
                if carry.count > 1 << 20 { carry = [] } // a runaway line: drop it
                return
            }
            let end = UnsafeRawPointer(nl).assumingMemoryBound(to: UInt8.self) - base
            if carry.isEmpty {
                line(base + start, end - start, onEvent)
            } else {
                carry.append(contentsOf: UnsafeBufferPointer(start: base + start, count: end - start))
                let line = carry
                carry = []
                line.withUnsafeBufferPointer { self.line($0.baseAddress!, $0.count, onEvent) }
            }
            start = end + 1
        }
    }

    private mutating func line(_ p: UnsafePointer<UInt8>, _ length: Int, _ onEvent: (Stamp?) -> Void) {
        var count = length
        if count > 0 && p[count - 1] == 0x0D { count -= 1 }
        if count == 0 {
            if hasData { onEvent(stamp) }
            hasData = false
            stamp = nil
            return
        }
        if count >= 3, p[0] == 0x69, p[1] == 0x64, p[2] == 0x3A { // id:
            var offset = 3
            if offset < count && p[offset] == 0x20 { offset += 1 }
            lastID = Array(UnsafeBufferPointer(start: p + offset, count: count - offset))
            return
        }
        if count >= 6, p[0] == 0x72, p[1] == 0x65, p[2] == 0x74, p[3] == 0x72, p[4] == 0x79, p[5] == 0x3A { // retry:
            var offset = 6
            if offset < count && p[offset] == 0x20 { offset += 1 }
            var value = 0
            var any = false
            while offset < count, p[offset] &- 0x30 < 10 {
                value = value &* 10 &+ Int(p[offset] - 0x30)
                offset += 1
                any = true
            }
            if any && offset == count { retryMilliseconds = value }
            return
        }
        // "data:" with an optional space; only the first data line of an event matters.
        guard !hasData, count >= 5, p[0] == 0x64, p[1] == 0x61, p[2] == 0x74, p[3] == 0x61, p[4] == 0x3A else { return }
        var offset = 5
        if offset < count && p[offset] == 0x20 { offset += 1 }
        hasData = true
        // A backdoor broadcast reaches qri-js as `TTT<message>`: skip the three-digit type.
        if count - offset > 5, p[offset] &- 0x30 < 10, p[offset + 1] &- 0x30 < 10, p[offset + 2] &- 0x30 < 10,
           p[offset + 3] == 0x62 {
            offset += 3
        }
        stamp = Stamp.parse(p + offset, count - offset)
    }
}

/// Decodes `Transfer-Encoding: chunked` incrementally (nginx sends event streams chunked).
struct ChunkedDecoder {
    private enum State { case size, sizeExtension, sizeLF, data, dataCR, dataLF, done }
    private var state = State.size
    private var size = 0
    private var remaining = 0

    var finished: Bool { state == .done }

    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            switch state {
            case .size:
                switch b {
                case 0x30...0x39: size = size &* 16 &+ Int(b - 0x30)
                case 0x61...0x66: size = size &* 16 &+ Int(b - 0x61 + 10)
                case 0x41...0x46: size = size &* 16 &+ Int(b - 0x41 + 10)
                case 0x0D: state = .sizeLF
                case 0x3B: state = .sizeExtension
                default: return false
                }
                i += 1
            case .sizeExtension:
                if b == 0x0D { state = .sizeLF }
                i += 1
            case .sizeLF:
                guard b == 0x0A else { return false }
                i += 1
                if size == 0 {
                    state = .done
                    return true
                }
                remaining = size
                size = 0
                state = .data
            case .data:
                let take = min(remaining, bytes.count - i)
                body(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)]))
                remaining -= take
                i += take
                if remaining == 0 { state = .dataCR }
            case .dataCR:
                guard b == 0x0D else { return false }
                state = .dataLF
                i += 1
            case .dataLF:
                guard b == 0x0A else { return false }
                state = .size
                i += 1
            case .done:
                return true
            }
        }
        return true
    }
}

/// One `EventSource`-like stream: TLS, `GET`, a `200` head, then events.
final class SSEStream: BenchConnection {
    let id: Int
    let pair: Int
    /// Close as soon as the stream head arrives (the handshake scenario).
    let closeWhenOpen: Bool
    /// A stream opened again after its server closed it (restart scenario), with Last-Event-ID.
    let isReconnect: Bool
    private let request: [UInt8]
    private var head: [UInt8] = []
    private(set) var isOpen = false
    private var chunked: ChunkedDecoder?
    private var parser = SSEParser()
    /// The newest stamp seen, to tell a repeat (Qri's periodic herald re-broadcast, a replay)
    /// from a new delivery.
    var lastStep = -1
    var lastSeq = -1

    var lastEventID: [UInt8] { parser.lastID.isEmpty ? resumedFrom : parser.lastID }
    var retryMilliseconds: Int? { parser.retryMilliseconds }
    private let resumedFrom: [UInt8]

    init(bench: Bench, fd: Int32, id: Int, pair: Int, path: String, closeWhenOpen: Bool,
         session: TLSSession?, lastEventID: [UInt8] = [], isReconnect: Bool = false) throws(SystemError) {
        self.id = id
        self.pair = pair
        self.closeWhenOpen = closeWhenOpen
        self.isReconnect = isReconnect
        resumedFrom = lastEventID
        let resume = lastEventID.isEmpty ? "" : "Last-Event-ID: \(String(decoding: lastEventID, as: UTF8.self))\r\n"
        request = Array("GET \(path) HTTP/1.1\r\nHost: \(bench.options.serverName)\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\(resume)\r\n".utf8)
        try super.init(bench: bench, fd: fd, tls: bench.tls, session: session)
    }

    override func didBecomeReady() {
        queue(request)
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if isOpen { return body(bytes) }
        head.append(contentsOf: bytes)
        guard let end = Self.headEnd(head) else {
            if head.count > 16 << 10 { close(reason: "response head too large") }
            return !isClosed
        }
        let status = head.count > 12 ? Int(String(decoding: head[9..<12], as: UTF8.self)) ?? 0 : 0
        guard status == 200 else {
            close(reason: "status \(status)")
            return false
        }
        let text = String(decoding: head[..<end], as: UTF8.self).lowercased()
        if text.contains("\r\ntransfer-encoding: chunked") { chunked = ChunkedDecoder() }
        let rest = Array(head[end...])
        head = []
        isOpen = true
        bench.streamOpened(self)
        if isClosed || closeWhenOpen { return false }
        return rest.withUnsafeBytes { body($0) }
    }

    private func body(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let bench = self.bench
        if chunked != nil {
            var ok = true
            ok = chunked!.feed(bytes) { part in parser.feed(part) { bench.streamEvent(self, $0) } }
            if !ok { close(reason: "bad chunked encoding") }
        } else {
            parser.feed(bytes) { bench.streamEvent(self, $0) }
        }
        return !isClosed
    }

    override func didClose(reason: String) {
        bench.streamClosed(self, reason: reason)
    }

    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 3..<bytes.count where bytes[i] == 0x0A && bytes[i - 1] == 0x0D && bytes[i - 2] == 0x0A && bytes[i - 3] == 0x0D {
            return i + 1
        }
        return nil
    }
}
