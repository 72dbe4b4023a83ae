import QriHTTP

/// One HTTP/2 stream of an `H2Session`: a request being read, then its answer — a short one
/// that ends the stream, or an SSE stream that routing, Ticks and the slow-stream rule treat
/// like an HTTP/1.1 one.
///
/// Its unsent bytes wait in `pending` until nghttp2 asks for them within the client's
/// flow-control window. An idle SSE stream holds no buffer. Confined to its loop thread.
final class H2Stream: EventStream {
    /// A request's pseudo-headers and headers while its HEADERS (and CONTINUATIONs) arrive.
    final class Request {
        /// Header list size so far (RFC 9113: name + value + 32 per field).
        var bytes = 0
        private var method: [UInt8] = []
        private var target: [UInt8] = []
        private var headers: [(name: [UInt8], value: [UInt8])] = []

        func add(_ name: [UInt8], _ value: [UInt8]) {
            switch name {
            case Array(":method".utf8): method = value
            case Array(":path".utf8): target = value
            case _ where name.first == UInt8(ascii: ":"): break
            default: headers.append((name, value))
            }
        }

        /// The request as the HTTP/1.1 code reads it; a body shows as a `Content-Length`.
        func head(hasBody: Bool) -> RequestHead {
            let question = target.firstIndex(of: UInt8(ascii: "?"))
            let path = Array(target[..<(question ?? target.endIndex)])
            let query = question.map { Array(target[($0 + 1)...]) } ?? []
            var all = headers.filter { $0.name != Array("content-length".utf8) }
            if hasBody { all.append((Array("content-length".utf8), Array("1".utf8))) }
            return RequestHead(method: method, path: path, query: query, minorVersion: 1, headers: all)
        }
    }

    let id: Int32
    unowned let session: H2Session
    var request: Request? = Request()
    private(set) var slot = -1
    private(set) var pair = PairKey(peer: [], checksum: [])
    private var startID: UInt64 = 0
    /// Whether this is an open SSE stream (in routing).
    private(set) var isEventStream = false
    /// Unsent bytes are `pending[sent...]`.
    private var pending: [UInt8] = []
    private var sent = 0
    /// nghttp2 parked the stream's DATA (nothing was queued): resume it on the next bytes.
    var deferred = false
    /// A short answer: the stream ends once its body has been sent.
    private(set) var endsWhenSent = false

    var streamProtocol: GatewayMetrics.StreamProtocol { .h2 }
    var pendingCount: Int { pending.count - sent }

    init(id: Int32, session: H2Session) {
        self.id = id
        self.session = session
    }

    // MARK: Answering

    func respond(to head: RequestHead) {
        let gateway = session.gateway
        switch StreamRoute(head, cors: gateway.configuration.corsOrigins) {
        case .rejected(let error):
            answer(error.status, error.reason)
        case .notFound:
            answer(.notFound, "not found")
        case .preflight(let headers):
            session.submitResponse(id, status: .noContent, headers: headers, hasBody: false)
        case .methodNotAllowed(let omitBody):
            answer(.methodNotAllowed, "method not allowed", headers: [("Allow", "GET, OPTIONS")], omitBody: omitBody)
        case .missingParameter(let name):
            answer(.badRequest, "missing parameter \(name)")
        case .stream(let pair, let lastEventID, let cors):
            open(pair, lastEventID: lastEventID, cors: cors)
        }
    }

    private func answer(_ status: HTTPStatus, _ text: String, headers: [(String, String)] = [], omitBody: Bool = false) {
        let body = Array((text + "\n").utf8)
        var all = headers
        all.append(("Content-Type", "text/plain; charset=utf-8"))
        all.append(("Content-Length", String(body.count)))
        if omitBody {
            session.submitResponse(id, status: status, headers: all, hasBody: false)
            return
        }
        pending = body
        endsWhenSent = true
        session.submitResponse(id, status: status, headers: all, hasBody: true)
    }

    private func open(_ pair: PairKey, lastEventID: UInt64?, cors: [(String, String)]) {
        let gateway = session.gateway
        let worker = session.worker
        let start = gateway.registry.openStream(pair, loop: worker.index, lastEventID: lastEventID)
        self.pair = pair
        slot = start.slot
        startID = start.startID
        isEventStream = true
        worker.addStream(self)
        session.eventStreamOpened()
        pending = StreamRoute.opening(start, lastEventID: lastEventID, gateway: gateway)
        session.submitResponse(id, status: .ok, headers: StreamRoute.streamHeaders + cors, hasBody: true)
    }

    // MARK: Events

    func sendLive(_ event: EncodedEvent) -> Bool {
        guard isEventStream, event.id > startID else { return false }
        if pending.isEmpty {
            pending = event.wire  // shares the event's buffer until the next append
        } else {
            pending.append(contentsOf: event.wire)
        }
        session.dataQueued(self)
        return true
    }

    /// HTTP/2 is not offered in cluster mode (see `LoopWorker.accepted`).
    func sendAtPosition(_ body: ArraySlice<UInt8>) -> Bool { false }

    /// Copies up to `length` unsent bytes into nghttp2's frame buffer.
    func take(into buffer: UnsafeMutablePointer<UInt8>, length: Int) -> Int {
        let n = min(length, pendingCount)
        guard n > 0 else { return 0 }
        pending.withUnsafeBufferPointer { bytes in
            buffer.update(from: bytes.baseAddress! + sent, count: n)
        }
        sent += n
        if sent == pending.count {
            pending = []
            sent = 0
        } else if sent >= 64 << 10 && sent * 2 >= pending.count {
            pending.removeFirst(sent)
            sent = 0
        }
        return n
    }

    /// The stream ended (closed by either side, reset as slow, or its connection closing):
    /// out of routing, its buffer freed. Idempotent.
    func closed() {
        pending = []
        sent = 0
        guard isEventStream else { return }
        isEventStream = false
        let worker = session.worker
        worker.gateway.registry.closeStream(pair, loop: worker.index)
        worker.removeStream(self)
        session.eventStreamClosed()
    }
}
