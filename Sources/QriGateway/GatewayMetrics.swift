import Metrics

/// The gateway's metric series (SPEC.md "Observability"), made once through swift-metrics and
/// exported by whatever backend the process bootstraps (Prometheus on the admin listener).
public final class GatewayMetrics: Sendable {
    public enum Listener: String, Sendable, CaseIterable { case `public`, admin, ingest }
    public enum Source: String, Sendable, CaseIterable { case ingest, publish, backdoor }
    public enum EventKind: String, Sendable, CaseIterable { case message, herald, tick, replay, gap }
    public enum RejectReason: String, Sendable, CaseIterable {
        case maxConnections = "max_connections", headerTimeout = "header_timeout"
        case handshakeTimeout = "handshake_timeout", idleTimeout = "idle_timeout"
        case headerTooLarge = "header_too_large", bodyTooLarge = "body_too_large"
        case badRequest = "bad_request", badFrame = "bad_frame"
        case maxAdminConnections = "max_admin_connections", maxIngestConnections = "max_ingest_connections"
        case frameTimeout = "frame_timeout", perIP = "per_ip"
        // HTTP/2 abuse bounds (SPEC.md, *HTTP/2*): the connection is closed with GOAWAY.
        case h2RapidReset = "h2_rapid_reset", h2Flood = "h2_flood"
        case h2HeaderTooLarge = "h2_header_too_large", h2ProtocolError = "h2_protocol_error"
    }
    /// The protocol an SSE stream is carried over.
    public enum StreamProtocol: String, Sendable, CaseIterable { case h1, h2 }

    private let connections: [Meter]
    private let streams: [Meter]
    let pairs = Gauge(label: "qri_pairs")
    private let received: [Counter]
    private let delivered: [Counter]
    let messagesWithoutStream = Counter(label: "qri_messages_without_stream_total")
    let slowStreamsClosed = Counter(label: "qri_slow_streams_closed_total")
    private let rejected: [Counter]
    let handshakesOK = Counter(label: "qri_tls_handshakes_total", dimensions: [("result", "ok")])
    let handshakesFailed = Counter(label: "qri_tls_handshakes_total", dimensions: [("result", "failed")])
    let resumedFromCache = Counter(label: "qri_tls_resumptions_total", dimensions: [("kind", "cache")])
    let resumedWithTicket = Counter(label: "qri_tls_resumptions_total", dimensions: [("kind", "ticket")])
    /// TLS handshakes in progress on the public listener, all loops together.
    let handshakesInProgress = Meter(label: "qri_tls_handshakes_in_progress")
    /// The most handshakes ever in progress at once on one loop (MAX_HANDSHAKES bounds it).
    let handshakesInProgressPeak = Gauge(label: "qri_tls_handshakes_in_progress_peak")
    /// Times a loop stopped accepting on the public listener because MAX_HANDSHAKES were
    /// in progress.
    let acceptPausesForHandshakes = Counter(label: "qri_accept_paused_total", dimensions: [("reason", "max_handshakes")])
    let certReloadsOK = Counter(label: "qri_cert_reloads_total", dimensions: [("result", "ok")])
    let certReloadsFailed = Counter(label: "qri_cert_reloads_total", dimensions: [("result", "failed")])
    let certExpiry = Gauge(label: "qri_cert_expiry_timestamp_seconds")

    public init() {
        streams = StreamProtocol.allCases.map { Meter(label: "qri_streams", dimensions: [("protocol", $0.rawValue)]) }
        connections = Listener.allCases.map { Meter(label: "qri_connections", dimensions: [("listener", $0.rawValue)]) }
        received = Source.allCases.map { Counter(label: "qri_messages_received_total", dimensions: [("source", $0.rawValue)]) }
        delivered = EventKind.allCases.map { Counter(label: "qri_events_delivered_total", dimensions: [("kind", $0.rawValue)]) }
        rejected = RejectReason.allCases.map { Counter(label: "qri_connections_rejected_total", dimensions: [("reason", $0.rawValue)]) }
    }

    public func connectionOpened(_ listener: Listener) { connections[index(listener)].increment() }
    public func connectionClosed(_ listener: Listener) { connections[index(listener)].decrement() }
    public func streamOpened(_ kind: StreamProtocol) { streams[index(kind)].increment() }
    public func streamClosed(_ kind: StreamProtocol) { streams[index(kind)].decrement() }
    public func received(_ source: Source, count: Int = 1) { received[index(source)].increment(by: count) }
    public func delivered(_ kind: EventKind, count: Int = 1) {
        if count > 0 { delivered[index(kind)].increment(by: Int64(count)) }
    }
    public func rejected(_ reason: RejectReason) { rejected[index(reason)].increment() }

    private func index<T: CaseIterable & Equatable>(_ value: T) -> Int {
        T.allCases.firstIndex(of: value).map { T.allCases.distance(from: T.allCases.startIndex, to: $0) } ?? 0
    }
}
