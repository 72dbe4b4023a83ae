import Logging
import QriLoop
import QriRedis
import QriTLS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// This node's part of a cluster: the Redis servers (shards), one `ClusterLoop` per event
/// loop (its command connections), the `ClusterSubscriber` on loop 0 (one subscriber
/// connection per server: a node counts once in `PUBLISH`'s receivers), and what `/readyz`
/// reports. Thread-safe; the objects it holds are each confined to their loop.
final class ClusterNode: @unchecked Sendable {
    let servers: [RedisEndpoint]
    /// Literal addresses of `servers`, resolved once at start-up (never on a loop).
    let addresses: [String]
    let fingerprint: String
    let name: String
    let tls: TLSClientContext?
    let configuration: GatewayConfiguration
    let logger: Logger
    let metrics: ClusterMetrics

    private(set) var loops: [ClusterLoop] = []
    private(set) var subscriber: ClusterSubscriber!
    /// The stored backdoor messages, in Redis; set once at start.
    var backdoor: RedisBackdoorStore?

    /// Per server: whether the subscriber connection is up and every subscription confirmed,
    /// and how many loops' command connections are up.
    private let readiness: Mutex<[(subscribed: Bool, commandLoops: Int)]>

    init(configuration: GatewayConfiguration, logger: Logger) throws(ConfigurationError) {
        servers = configuration.redis
        self.configuration = configuration
        self.logger = logger
        var resolved: [String] = []
        for server in servers {
            guard let address = resolveHostAddress(server.host) else {
                throw ConfigurationError("cannot resolve the Redis host of \(server)")
            }
            resolved.append(address)
        }
        addresses = resolved
        fingerprint = ClusterKeys.fingerprint(servers.map(\.description))
        name = configuration.nodeName ?? Self.defaultName(publicPort: configuration.listen.port)
        if servers.contains(where: \.tls) {
            do {
                tls = try TLSClientContext(caFile: configuration.redisCA, serverName: nil, systemCAs: true, alpn: false)
            } catch {
                throw ConfigurationError("cannot set up TLS for Redis: \(error)")
            }
        } else {
            tls = nil
        }
        readiness = Mutex(Array(repeating: (false, 0), count: servers.count))
        metrics = ClusterMetrics(servers: servers.map(\.description), fingerprint: fingerprint)
    }

    private static func defaultName(publicPort: UInt16) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        let host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(host):\(publicPort)"
    }

    /// Makes the per-loop parts on their loops and starts connecting. Call once, before the
    /// loops run.
    func start(workers: [LoopWorker]) {
        loops = workers.map { ClusterLoop(node: self, worker: $0) }
        subscriber = ClusterSubscriber(node: self, worker: workers[0])
        for loop in loops { loop.start() }
        subscriber.start()
        logger.notice("cluster", metadata: ["node": "\(name)", "servers": "\(servers.map(\.description).joined(separator: ","))",
                                            "fingerprint": "\(fingerprint)"])
    }

    /// Checks, on each server that answers within two seconds, that the nodes of this
    /// cluster list the same servers in the same order: the first node stores the
    /// fingerprint of its list, later ones compare. Runs a loop of its own on the calling
    /// thread, at start-up, before any listener accepts.
    func verifyFingerprint() throws(ConfigurationError) {
        guard let loop = try? EventLoop(index: -1) else { return }
        var mismatch: String?
        var answered = 0
        var connections: [RedisConnection] = []
        for (shard, server) in servers.enumerated() {
            let connection = RedisConnection(endpoint: server, address: addresses[shard], loop: loop, tls: tls,
                                             subscriber: false, stallSeconds: 2)
            connection.onUp = { [unowned connection] in
                let key = Array("qri:fingerprint".utf8)
                connection.send([Array("SET".utf8), key, Array(self.fingerprint.utf8), Array("NX".utf8), Array("GET".utf8)]) { result in
                    answered += 1
                    if case .success(.string(let stored)) = result, stored != Array(self.fingerprint.utf8) {
                        mismatch = "Redis \(server) belongs to a cluster with another server list (fingerprint \(String(decoding: stored, as: UTF8.self)), this node's is \(self.fingerprint)): every node must list the same --redis servers in the same order"
                    }
                    if answered == self.servers.count || mismatch != nil { loop.stop() }
                }
            }
            connections.append(connection)
            connection.start()
        }
        loop.after(nanoseconds: 2_000_000_000) {
            if answered < self.servers.count {
                self.logger.warning("not every Redis server answered at start-up; the server list was not compared with the cluster's")
            }
            loop.stop()
        }
        loop.run()
        connections.removeAll()
        if let mismatch { throw ConfigurationError(mismatch) }
    }

    /// A connection to server `shard` on `loop`; `up` and `down` hear of its state.
    func connection(to shard: Int, on loop: EventLoop, subscriber: Bool,
                    up: @escaping (Int) -> Void, down: @escaping (Int, String) -> Void) -> RedisConnection {
        let connection = RedisConnection(endpoint: servers[shard], address: addresses[shard], loop: loop, tls: tls,
                                         subscriber: subscriber, stallSeconds: max(2, configuration.redisTimeout * 4))
        connection.onUp = { up(shard) }
        connection.onDown = { down(shard, $0) }
        return connection
    }

    /// Lets go of the per-loop parts once the loops have stopped (they refer to their
    /// workers, which refer to this node through the core).
    func detach() {
        loops = []
        subscriber = nil
        backdoor = nil
    }

    func shard(of pair: PairKey) -> Int { ClusterKeys.shard(of: pair, shards: servers.count) }
    func shard(ofName name: [UInt8]) -> Int { ClusterKeys.shard(ofName: name, shards: servers.count) }

    // MARK: Readiness

    func setSubscribed(_ shard: Int, _ up: Bool) {
        readiness.withLock { $0[shard].subscribed = up }
    }

    func commandConnection(_ shard: Int, up: Bool) {
        readiness.withLock { $0[shard].commandLoops += up ? 1 : -1 }
    }

    /// nil when ready, else the reason, one line.
    func notReadyReason() -> String? {
        let loopsCount = loops.count
        return readiness.withLock { state in
            for (i, server) in state.enumerated() {
                if server.commandLoops < loopsCount { return "Redis \(servers[i]) unreachable" }
                if !server.subscribed { return "subscriptions on \(servers[i]) not confirmed" }
            }
            return nil
        }
    }
}


extension ClusterNode {
    /// A control message: a change of the stored backdoor messages. On loop 0.
    func backdoorChanged(_ payload: [UInt8]) {
        backdoor?.apply(payload)
    }

    /// The subscription to the control channel is (back) in place: reload the whole set.
    func reloadBackdoor() {
        backdoor?.reload()
    }
}
