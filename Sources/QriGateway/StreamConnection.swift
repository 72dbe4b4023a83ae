import QriHTTP
import QriLoop
import QriTransport
import QriTLS

/// A connection on the public listener: one request, then, for `GET /stream`, an event
/// stream for one (peer, checksum) until either side closes. Every other answer closes the
/// connection, since browsers never retry after a non-200.
final class StreamConnection: Connection, EventStream {
    private enum State {
        case readingHead
        /// Cluster mode: answered 200 with `retry:`, waiting for the pair's position and
        /// history from Redis before its Tick, stored messages and replay.
        case opening
        case streaming
        case answered
    }

    private var state = State.readingHead
    private var parser: RequestHeadParser
    private var headBytes: [UInt8] = []
    private(set) var pair = PairKey(peer: [], checksum: [])
    /// The registry's number for `pair` while this stream is open.
    private(set) var slot = -1
    /// Live events with an id up to this one are not for this stream (replayed, or older).
    private var startID: UInt64 = 0

    // Cluster mode: ids come from Redis, and a message may arrive twice (live and in the
    // history read when the stream opens or catches up): the stream sends each id once, in
    // increasing order, and its Ticks carry the id it is at.
    /// The newest event id this stream was sent (or its pair's position when it opened).
    private(set) var lastID: UInt64 = 0
    /// The requested Last-Event-ID while opening.
    private var resumeFrom: UInt64?
    /// Live events that came while the history is being read; sent after it.
    private var held: [EncodedEvent] = []
    private var heldBytes = 0
    /// Catching up after an outage: reading the history again from `lastID`.
    private var catchingUp = false
    var streamProtocol: GatewayMetrics.StreamProtocol { .h1 }
    /// Whether the connection is an open event stream (not a handshake, head or answer).
    var isStreaming: Bool { (state == .streaming || session != nil) && !isClosed }

    init(worker: LoopWorker, transport: any Transport) {
        parser = RequestHeadParser(limit: worker.gateway.configuration.maxHeaderBytes)
        super.init(worker: worker, transport: transport, listener: .public, tls: true)
    }

    /// The HTTP/2 session when ALPN selected `h2`: then this connection carries many streams.
    private var session: H2Session?

    override func didBecomeReady() {
        worker.arm(self, .header)
        if (transport as? TLSTransport)?.selectedH2 == true {
            session = H2Session(connection: self)
            requestFlush()
        }
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if let session { return session.receive(bytes) }
        // Once streaming, whatever the client sends is read only to notice when it leaves.
        guard state == .readingHead else { return true }
        headBytes.append(contentsOf: bytes)
        switch headBytes.withUnsafeBytes({ parser.parse($0) }) {
        case .incomplete:
            return true
        case .failed(let error):
            reject(error)
            return false
        case .complete(let head, _):
            headBytes = []
            worker.disarm(self)
            respond(to: head)
            return true
        }
    }

    override func didClose() {
        session?.connectionClosed()
        if state == .streaming || state == .opening {
            worker.gateway.registry.closeStream(pair, loop: worker.index)
            worker.removeStream(self)
            worker.clusterLoop?.release(pair)
        }
    }

    /// Queues a live event unless it predates the stream. Returns whether the event was queued;
    /// whether the client is too slow is judged when the write is tried (`didRefuseOutput`).
    func sendLive(_ event: EncodedEvent) -> Bool {
        guard !isClosed else { return false }
        if worker.clusterLoop != nil {
            if state == .opening || (state == .streaming && catchingUp) { return hold(event) }
            guard state == .streaming, event.id > lastID else { return false }
            lastID = event.id
        } else {
            guard state == .streaming, event.id > startID else { return false }
        }
        enqueue(event)
        return true
    }

    /// Over HTTP/2, fills the output from the session and writes, until the socket or every
    /// stream's window takes no more (all streams of a connection in one write per pass);
    /// then the slow-stream rule per stream, and the close once a GOAWAY'd session is done.
    override func flush() {
        guard let session else { return super.flush() }
        while !isClosed {
            let more = session.fill()
            super.flush()
            if !more || pendingOutputBytes > 0 { break }
        }
        guard !isClosed else { return }
        session.resetSlowStreams()
        if session.eventStreams == 0 && session.isFinished && pendingOutputBytes == 0 { close() }
    }

    override func closeGracefully() {
        if let session, !isClosed {
            session.goAway()
            _ = session.fill()
        }
        super.closeGracefully()
    }

    /// The slow-stream rule: judged after a write was tried and the socket took no more, on
    /// the bytes still queued — never on events queued in this pass before any write.
    override func didRefuseOutput() {
        guard session == nil, state == .streaming || state == .opening,
              pendingOutputBytes > worker.gateway.configuration.streamBufferBytes else { return }
        worker.gateway.metrics.slowStreamsClosed.increment()
        close()
    }

    // MARK: Answering

    private func reject(_ error: HTTPError) {
        switch error {
        case .headerTooLarge: worker.reject(fd: transport.fd, .headerTooLarge)
        default: worker.reject(fd: transport.fd, .badRequest)
        }
        answer(error.status, error.reason)
    }

    /// Answers with a short text and closes: half-close once written, then read and drop
    /// until the client closes (or the linger timeout), so that a client still sending sees
    /// the answer rather than a reset.
    private func answer(_ status: HTTPStatus, _ text: String, headers: [(String, String)] = [], omitBody: Bool = false) {
        state = .answered
        var all = headers
        all.append(("Content-Type", "text/plain; charset=utf-8"))
        all.append(("Connection", "close"))
        let body = Array((text + "\n").utf8)
        var response = ResponseHead.complete(status, headers: all, body: body)
        if omitBody { response.removeLast(body.count) }
        enqueueAndHalfClose(response)
        worker.arm(self, .linger)
    }

    private func respond(to head: RequestHead) {
        switch StreamRoute(head, cors: worker.gateway.configuration.corsOrigins) {
        case .rejected(let error):
            reject(error)
        case .notFound:
            answer(.notFound, "not found")
        case .preflight(let headers):
            state = .answered
            enqueueAndClose(ResponseHead.complete(.noContent, headers: headers + [("Connection", "close")], body: []))
        case .methodNotAllowed(let omitBody):
            answer(.methodNotAllowed, "method not allowed", headers: [("Allow", "GET, OPTIONS")], omitBody: omitBody)
        case .missingParameter(let name):
            answer(.badRequest, "missing parameter \(name)")
        case .stream(let pair, let lastEventID, let cors):
            startStream(pair, lastEventID: lastEventID, cors: cors)
        }
    }

    private func startStream(_ pair: PairKey, lastEventID: UInt64?, cors: [(String, String)]) {
        let gateway = worker.gateway
        if let cluster = worker.clusterLoop {
            return openClusterStream(pair, lastEventID: lastEventID, cors: cors, cluster: cluster)
        }
        let start = gateway.registry.openStream(pair, loop: worker.index, lastEventID: lastEventID)
        self.pair = pair
        slot = start.slot
        startID = start.startID
        state = .streaming
        worker.addStream(self)
        var response = ResponseHead(.ok, headers: StreamRoute.streamHeaders + [("Connection", "keep-alive")])
        response.headers += cors
        enqueue(response.serialized() + StreamRoute.opening(start, lastEventID: lastEventID, gateway: gateway))
    }

    /// The stream's `retry:`: the base plus a uniform random share of RETRY_JITTER in whole
    /// ms, so clients dropped together (a restart, a drain) come back spread over that window.
    static func retry(_ configuration: GatewayConfiguration) -> Int {
        let jitter = Int((configuration.retryJitter * 1000).rounded())
        return configuration.retryMilliseconds + (jitter > 0 ? Int.random(in: 0...jitter) : 0)
    }
}

// MARK: Cluster mode

extension StreamConnection {
    /// Whether the stream waits for its pair's position and history from Redis.
    var needsPosition: Bool { !isClosed && (state == .opening || (state == .streaming && catchingUp)) }
    var isClusterStreaming: Bool { !isClosed && state == .streaming }

    private func responseHead(_ cors: [(String, String)]) -> [UInt8] {
        var response = ResponseHead(.ok, headers: StreamRoute.streamHeaders + [("Connection", "keep-alive")])
        response.headers += cors
        var out = response.serialized()
        SSEEncoder.appendRetry(milliseconds: Self.retry(worker.gateway.configuration), to: &out)
        return out
    }

    /// Answers 200 with `retry:` at once (a browser then waits rather than retrying), joins
    /// the pair's channel and reads its history; the rest follows in `positionRead`.
    fileprivate func openClusterStream(_ pair: PairKey, lastEventID: UInt64?, cors: [(String, String)], cluster: ClusterLoop) {
        let start = worker.gateway.registry.openStream(pair, loop: worker.index, lastEventID: nil)
        self.pair = pair
        slot = start.slot
        resumeFrom = lastEventID
        state = .opening
        worker.addStream(self)
        enqueue(responseHead(cors))
        cluster.open(stream: serial, pair: pair)
    }

    func beginCatchUp() {
        catchingUp = true
    }

    /// The pair's position and history came: on opening, the Tick, stored messages, gap and
    /// replay; on catching up, what the stream missed (or a gap); then what was held.
    func positionRead(_ position: ClusterPosition) {
        let gateway = worker.gateway
        var out: [UInt8] = []
        let from: UInt64?
        if state == .opening {
            from = resumeFrom
            let lead = resumeFrom ?? position.position
            SSEEncoder.appendEvent(id: lead, data: Array("Tick".utf8), to: &out)
            gateway.metrics.delivered(.tick)
            let heralds = gateway.registry.heralds()
            for herald in heralds {
                SSEEncoder.appendEvent(id: lead, data: Registry.heraldData(type: herald.type, message: herald.message), to: &out)
            }
            gateway.metrics.delivered(.herald, count: heralds.count)
            lastID = position.position
            state = .streaming
        } else {
            from = lastID
        }
        if let from {
            if gateway.configuration.history > 0 && position.gap(after: from) {
                var requested: [UInt8] = []
                SSEEncoder.appendHex(from, to: &requested)
                SSEEncoder.appendEvent(id: from, name: Array("gap".utf8), data: requested, to: &out)
                gateway.metrics.delivered(.gap)
            }
            var replayed = 0
            for entry in position.entries where entry.id > from {
                SSEEncoder.appendEvent(id: entry.id, data: entry.message, to: &out)
                replayed += 1
            }
            gateway.metrics.delivered(.replay, count: replayed)
            lastID = max(lastID, position.entries.last?.id ?? 0)
        }
        lastID = max(lastID, position.position)
        catchingUp = false
        resumeFrom = nil
        if !out.isEmpty { enqueue(out) }
        let waiting = held
        held = []
        heldBytes = 0
        var delivered = 0
        for event in waiting where sendLive(event) { delivered += 1 }
        gateway.metrics.delivered(.message, count: delivered)
    }

    /// Keeps a live event until the history read is done; a stream that gathers more than
    /// its buffer meanwhile is closed as slow (its client resumes).
    fileprivate func hold(_ event: EncodedEvent) -> Bool {
        held.append(event)
        heldBytes += event.size
        if heldBytes > worker.gateway.configuration.streamBufferBytes {
            worker.gateway.metrics.slowStreamsClosed.increment()
            close()
            return false
        }
        return false
    }

    /// Ticks and stored messages in cluster mode carry the id the stream is at; `body` is
    /// the event's encoded data part.
    func sendAtPosition(_ body: ArraySlice<UInt8>) -> Bool {
        guard !isClosed, state == .streaming, !catchingUp else { return false }
        enqueue(EncodedEvent(id: lastID, body: body))
        return true
    }
}
