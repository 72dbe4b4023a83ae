/// The life of one connection as a value: what happened goes in, what to do comes out — no
/// sockets, no clock of its own (`now` is passed in), so every transition is unit-tested with
/// a mock clock (the shape of Hummingbird 2's `HTTPConnectionStateHandler`).
///
///     handshaking ──handshake done──▶ readingHead ──stream opened──▶ streaming
///          │                           │   ▲  │                         │
///          │                   answered│   │  └── keep-alive answer ─▶ idle (admin)
///          │                           ▼   └──── last h2 stream closed ─┘
///          │                       lingering ──linger timeout / peer closed──▶ closed
///          └──── timeout, failure, peer closed, drain ───────────────────────▶ closed
///   any open state ──drain──▶ draining ──output drained──▶ closed (close_notify first)
///
/// Timeouts are deadlines in monotonic nanoseconds; a timeout that fires for a deadline no
/// longer armed (the state moved on) does nothing.
struct ConnectionLifecycle: Equatable {
    enum State: Equatable {
        /// TLS handshake in progress (from accept).
        case handshaking
        /// Waiting for a request head (HTTP/1.1) or a first stream (HTTP/2).
        case readingHead
        /// An event stream (HTTP/1.1), or at least one (HTTP/2).
        case streaming
        /// An admin keep-alive connection between requests.
        case idle
        /// Answered; the answer is written, then the output half-closed, then reads are
        /// dropped until the peer closes or the linger timeout.
        case lingering(halfClosed: Bool)
        /// Closing in order: the output is written, then close_notify, then closed.
        case draining
        case closed
    }

    enum Timeout: Equatable, CaseIterable { case handshake, header, idle, linger }

    /// The protocol attached once the handshake tells (ALPN).
    enum WireProtocol: Equatable { case http1, h2 }

    enum Action: Equatable {
        case arm(Timeout, deadline: UInt64)
        case disarm
        case attach(WireProtocol)
        /// Write what is queued (the before-sleep flush).
        case flush
        /// close_notify (TLS) or FIN: nothing more will be written.
        case shutdownOutput
        /// Close now; `timedOut` names the timeout that closed it (counted as a rejection
        /// when it is not the linger one).
        case close(timedOut: Timeout?)
    }

    struct Durations: Equatable {
        var handshake: UInt64
        var header: UInt64
        var idle: UInt64
        var linger: UInt64

        func of(_ timeout: Timeout) -> UInt64 {
            switch timeout {
            case .handshake: return handshake
            case .header: return header
            case .idle: return idle
            case .linger: return linger
            }
        }
    }

    private(set) var state: State
    /// The armed timeout and its deadline, if any.
    private(set) var armed: (timeout: Timeout, deadline: UInt64)?
    let durations: Durations

    static func == (a: ConnectionLifecycle, b: ConnectionLifecycle) -> Bool {
        a.state == b.state && a.armed?.timeout == b.armed?.timeout && a.armed?.deadline == b.armed?.deadline
            && a.durations == b.durations
    }

    /// A TLS connection starts handshaking with its timeout armed; a plain one reads at once.
    init(tls: Bool, durations: Durations, now: UInt64) {
        self.durations = durations
        state = tls ? .handshaking : .readingHead
        armed = tls ? (.handshake, now + durations.handshake) : nil
    }

    var isClosed: Bool { state == .closed }

    private mutating func arm(_ timeout: Timeout, now: UInt64) -> Action {
        let deadline = now + durations.of(timeout)
        armed = (timeout, deadline)
        return .arm(timeout, deadline: deadline)
    }

    private mutating func disarm() -> Action {
        armed = nil
        return .disarm
    }

    private mutating func close(timedOut: Timeout? = nil) -> [Action] {
        guard state != .closed else { return [] }
        state = .closed
        armed = nil
        return [.close(timedOut: timedOut)]
    }

    // MARK: Events

    /// The handshake completed; `h2` when ALPN selected it.
    mutating func handshakeCompleted(h2: Bool, now: UInt64) -> [Action] {
        guard state == .handshaking else { return [] }
        state = .readingHead
        return [arm(.header, now: now), .attach(h2 ? .h2 : .http1)]
    }

    /// A stream opened (the first one, over HTTP/2): no timeout while streaming.
    mutating func streamOpened() -> [Action] {
        guard state == .readingHead || state == .streaming else { return [] }
        let wasStreaming = state == .streaming
        state = .streaming
        return wasStreaming ? [] : [disarm()]
    }

    /// HTTP/2: the connection's last stream closed; it must open another within the header
    /// timeout, as a new HTTP/1.1 connection must send its head.
    mutating func lastStreamClosed(now: UInt64) -> [Action] {
        guard state == .streaming else { return [] }
        state = .readingHead
        return [arm(.header, now: now)]
    }

    /// The first byte of a request head on an idle keep-alive connection.
    mutating func requestBegan(now: UInt64) -> [Action] {
        guard state == .idle else { return [] }
        state = .readingHead
        return [arm(.header, now: now)]
    }

    /// An admin answer was queued and the connection stays open for the next request.
    mutating func answeredKeepingAlive(now: UInt64) -> [Action] {
        guard state == .readingHead else { return [] }
        state = .idle
        return [arm(.idle, now: now), .flush]
    }

    /// An answer that ends the connection was queued: written, half-closed, then lingering.
    mutating func answeredClosing(now: UInt64) -> [Action] {
        switch state {
        case .readingHead, .idle, .streaming:
            state = .lingering(halfClosed: false)
            return [arm(.linger, now: now), .flush]
        default:
            return []
        }
    }

    /// Everything queued has been written.
    mutating func outputDrained(now: UInt64) -> [Action] {
        switch state {
        case .lingering(halfClosed: false):
            state = .lingering(halfClosed: true)
            return [.shutdownOutput, arm(.linger, now: now)]
        case .draining:
            return [.shutdownOutput] + close()
        default:
            return []
        }
    }

    /// Graceful close (shutdown, drain, an answer that closes at once): write what is
    /// queued, then close_notify. A handshake in progress is closed at once.
    mutating func drain() -> [Action] {
        switch state {
        case .handshaking:
            return close()
        case .readingHead, .streaming, .idle, .lingering:
            state = .draining
            return [disarm(), .flush]
        case .draining, .closed:
            return []
        }
    }

    /// The peer closed, or the socket or TLS failed.
    mutating func peerClosed() -> [Action] {
        close()
    }

    /// The loop's timeout sweep found `timeout` due at `now`. Stale deadlines do nothing.
    mutating func timeoutFired(_ timeout: Timeout, now: UInt64) -> [Action] {
        guard let armed, armed.timeout == timeout, armed.deadline <= now else { return [] }
        return close(timedOut: timeout)
    }
}
