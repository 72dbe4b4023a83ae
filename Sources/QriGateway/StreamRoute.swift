import QriHTTP

/// What the public listener does with a request, over HTTP/1.1 or HTTP/2 alike (SPEC.md,
/// *Public listener*): the one place that reads paths, methods and stream parameters.
enum StreamRoute {
    case notFound
    /// A CORS preflight on `/stream`: 204 with these headers.
    case preflight([(String, String)])
    /// 405 with `Allow`; `omitBody` for HEAD.
    case methodNotAllowed(omitBody: Bool)
    /// A request the client must not repeat (a body, bad framing): 400, counted as rejected.
    case rejected(HTTPError)
    /// 400 naming the missing parameter.
    case missingParameter(String)
    case stream(PairKey, lastEventID: UInt64?, cors: [(String, String)])

    init(_ head: RequestHead, cors policy: CORSPolicy) {
        if case .failure(let error) = head.bodyFraming() { self = .rejected(error); return }
        guard head.pathIs("/stream") else { self = .notFound; return }
        let cors = policy.headers(for: head.header("origin"))
        if head.methodIs("OPTIONS") {
            self = .preflight(cors + [("Access-Control-Allow-Methods", "GET, OPTIONS"),
                                      ("Access-Control-Allow-Headers", "Last-Event-ID, Cache-Control"),
                                      ("Access-Control-Max-Age", "86400"), ("Allow", "GET, OPTIONS")])
            return
        }
        guard head.methodIs("GET") else { self = .methodNotAllowed(omitBody: head.methodIs("HEAD")); return }
        // EventSource never sends a body; one here is a client error or a smuggling attempt.
        if case .success(let framing) = head.bodyFraming(), framing != .none {
            self = .rejected(.badRequest("a request body is not allowed here"))
            return
        }
        let query = QueryString(head.query, plusIsSpace: false)
        guard let peer = query.value("p"), !peer.isEmpty else { self = .missingParameter("p"); return }
        guard let checksum = query.value("s"), !checksum.isEmpty else { self = .missingParameter("s"); return }
        let lastEventID = head.header("last-event-id").flatMap(SSEEncoder.parseID)
            ?? query.value("lastEventId").flatMap(SSEEncoder.parseID)
        self = .stream(PairKey(peer: Array(peer), checksum: Array(checksum)), lastEventID: lastEventID, cors: cors)
    }

    /// The headers of a 200 event stream, before CORS (HTTP/2 leaves out `Connection`).
    static let streamHeaders = [
        ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"),
    ]

    /// What a stream sends after its head on one node: `retry:`, the Tick, the stored
    /// messages, the gap and the replay (counted as delivered).
    static func opening(_ start: StreamStart, lastEventID: UInt64?, gateway: GatewayCore) -> [UInt8] {
        var out: [UInt8] = []
        SSEEncoder.appendRetry(milliseconds: StreamConnection.retry(gateway.configuration), to: &out)
        // On a resumed stream the events before the replay carry the requested id, so a client
        // that drops before the replay resumes from the same point.
        let leadID = lastEventID ?? start.tickID
        SSEEncoder.appendEvent(id: leadID, data: Array("Tick".utf8), to: &out)
        gateway.metrics.delivered(.tick)
        for event in start.heralds {
            out += event.wire
        }
        gateway.metrics.delivered(.herald, count: start.heralds.count)
        if start.gap, let lastEventID {
            var requested: [UInt8] = []
            SSEEncoder.appendHex(lastEventID, to: &requested)
            SSEEncoder.appendEvent(id: lastEventID, name: Array("gap".utf8), data: requested, to: &out)
            gateway.metrics.delivered(.gap)
        }
        for event in start.replay {
            out += event.wire
        }
        gateway.metrics.delivered(.replay, count: start.replay.count)
        return out
    }
}

/// An open SSE stream as the loop's routing, Ticks and drain see it: one per HTTP/1.1
/// connection (`StreamConnection`), many per HTTP/2 connection (`H2Stream`).
protocol EventStream: AnyObject {
    /// The registry's number for the stream's pair while it is open.
    var slot: Int { get }
    var pair: PairKey { get }
    var streamProtocol: GatewayMetrics.StreamProtocol { get }
    /// Queues a live event unless it predates the stream; returns whether it was queued.
    func sendLive(_ event: EncodedEvent) -> Bool
    /// Cluster mode: a Tick or stored message carrying the id the stream is at.
    func sendAtPosition(_ body: ArraySlice<UInt8>) -> Bool
}
