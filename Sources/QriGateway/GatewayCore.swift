import Logging
import QriHTTP
import QriLoop
import QriTLS
import Synchronization

/// What every loop of a gateway shares: settings, the registry, metrics, the TLS context in
/// use, and the count of open connections per listener. Thread-safe.
final class GatewayCore: Sendable {
    let configuration: GatewayConfiguration
    let registry: Registry
    let metrics: GatewayMetrics
    let logger: Logger
    /// Warnings an attacker could multiply, one a second per kind.
    let warnings: RateLimitedLog
    let limits: ConnectionLimits
    /// This node's part of a cluster; nil on a node on its own.
    let cluster: ClusterNode?
    /// Open public connections per client address (MAX_CONNECTIONS_PER_IP).
    let perAddress: PerAddressCounts

    private let currentTLS: Mutex<TLSContext>
    private let workers = Mutex<[LoopWorker]>([])
    private let openPublic = Atomic<Int>(0)
    private let openAdmin = Atomic<Int>(0)
    private let openIngest = Atomic<Int>(0)
    private let handshakePeak = Atomic<Int>(0)
    private let drainingFlag = Atomic<Bool>(false)

    init(configuration: GatewayConfiguration, registry: Registry, metrics: GatewayMetrics, logger: Logger,
         tls: TLSContext, limits: ConnectionLimits, cluster: ClusterNode? = nil) {
        self.cluster = cluster
        self.configuration = configuration
        self.registry = registry
        self.metrics = metrics
        self.logger = logger
        self.limits = limits
        perAddress = PerAddressCounts(limit: configuration.maxConnectionsPerIP)
        warnings = RateLimitedLog(logger: logger)
        currentTLS = Mutex(tls)
    }

    /// The context new handshakes use; rotation swaps it.
    var tlsContext: TLSContext { currentTLS.withLock { $0 } }

    func replaceTLSContext(_ context: TLSContext) {
        currentTLS.withLock { $0 = context }
    }

    /// Connects the loops; `detach()` breaks the cycle again when they have stopped.
    func attach(_ workers: [LoopWorker]) {
        self.workers.withLock { $0 = workers }
    }

    func detach() {
        workers.withLock { $0 = [] }
    }

    /// Deliveries waiting on one loop past which ingest stops reading: it bounds the memory a
    /// sender faster than the streams can hold.
    static let backlogLimit = 20_000

    /// Whether some loop is too far behind on deliveries.
    func deliveryBacklogged() -> Bool {
        workers.withLock { $0.contains { $0.backlog > Self.backlogLimit } }
    }

    /// Adds `delta` to the open count of `listener`; returns the count before.
    private func addOpen(_ delta: Int, _ listener: GatewayMetrics.Listener) -> Int {
        switch listener {
        case .public: return openPublic.wrappingAdd(delta, ordering: .relaxed).oldValue
        case .admin: return openAdmin.wrappingAdd(delta, ordering: .relaxed).oldValue
        case .ingest: return openIngest.wrappingAdd(delta, ordering: .relaxed).oldValue
        }
    }

    /// Counts a new connection of `listener` in, or says no when its cap is reached.
    func admitConnection(_ listener: GatewayMetrics.Listener) -> Bool {
        if addOpen(1, listener) >= limits.limit(for: listener) {
            _ = addOpen(-1, listener)
            return false
        }
        return true
    }

    /// Records a loop's new peak of handshakes in progress when it is the highest of all.
    func recordHandshakePeak(_ peak: Int) {
        var seen = handshakePeak.load(ordering: .relaxed)
        while peak > seen {
            let (exchanged, original) = handshakePeak.compareExchange(expected: seen, desired: peak, ordering: .relaxed)
            if exchanged {
                metrics.handshakesInProgressPeak.record(peak)
                return
            }
            seen = original
        }
    }

    /// Whether a paced drain is under way (`/readyz` answers 503).
    var draining: Bool {
        get { drainingFlag.load(ordering: .relaxed) }
        set { drainingFlag.store(newValue, ordering: .relaxed) }
    }

    /// Open connections of `listener`, all loops together.
    func openConnections(_ listener: GatewayMetrics.Listener) -> Int { addOpen(0, listener) }

    func releaseConnection(_ listener: GatewayMetrics.Listener) {
        _ = addOpen(-1, listener)
    }

    func timeout(_ kind: LoopWorker.TimeoutKind) -> UInt64 {
        switch kind {
        case .handshake: return configuration.handshakeTimeout.nanoseconds
        case .header: return configuration.headerTimeout.nanoseconds
        case .idle: return configuration.idleTimeout.nanoseconds
        case .linger: return 2_000_000_000
        case .frame: return configuration.frameTimeout.nanoseconds
        }
    }

    /// Routes messages from any source, in order, as one batch: one registry lock and one
    /// hand-off per loop. Calls `record` with each message's position, its id and the
    /// streams of its pair open on this node. The one way in for every source, so that a
    /// cluster path (one pipeline to Redis, `"nodes": M`) can take its place.
    func route(_ messages: [IngestMessage], source: GatewayMetrics.Source,
               record: (Int, Registry.Routed) -> Void = { _, _ in }) {
        guard !messages.isEmpty else { return }
        var withoutStream = 0
        registry.route(messages) { i, routed in
            if routed.streams == 0 { withoutStream += 1 }
            record(i, routed)
        }
        metrics.received(source, count: messages.count)
        if withoutStream > 0 { metrics.messagesWithoutStream.increment(by: withoutStream) }
    }

    func tickEvent(id: UInt64) -> EncodedEvent {
        EncodedEvent(id: id, body: Self.tickBody)
    }

    private static let tickBody: [UInt8] = {
        var body: [UInt8] = []
        SSEEncoder.appendBody(data: Array("Tick".utf8), to: &body)
        return body
    }()
}
