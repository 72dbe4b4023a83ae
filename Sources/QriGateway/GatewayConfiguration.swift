public import QriLoop
public import QriRedis

/// Who may read streams and call the admin API from a browser page.
public enum CORSPolicy: Sendable, Equatable {
    case anyOrigin
    case origins([String])

    /// The `Access-Control-Allow-Origin` (and `Vary`) headers for a request with `origin`.
    public func headers(for origin: [UInt8]?) -> [(String, String)] {
        switch self {
        case .anyOrigin:
            return [("Access-Control-Allow-Origin", "*")]
        case .origins(let allowed):
            let origin = origin.map { String(decoding: $0, as: UTF8.self) }
            if let origin, allowed.contains(origin) {
                return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
            }
            return [("Vary", "Origin")]
        }
    }
}

/// Every setting of a running gateway, validated. Built by `ConfigurationLoader` from flags,
/// environment and config file; tests build it directly.
public struct GatewayConfiguration: Sendable {
    public var listen = SocketAddress(host: "0.0.0.0", port: 8443)
    public var adminListen = SocketAddress(host: "127.0.0.1", port: 9443)
    /// nil when the ingest listener is off.
    public var ingestListen: SocketAddress? = SocketAddress(host: "127.0.0.1", port: 5679)
    public var certificateFile = "certs/server.crt"
    public var keyFile = "certs/server.key"
    /// A DER OCSP response to staple while valid; nil: no stapling.
    public var ocspFile: String? = nil
    public var adminTokenFile: String?
    /// Session-ticket keys in nginx's 80-byte format; nil: random keys rotated hourly.
    public var ticketKeyFile: String? = nil
    /// The admin bearer token; nil when none is configured. Never logged.
    public var adminToken: [UInt8]?
    public var adminPlaintext = false
    public var corsOrigins = CORSPolicy.anyOrigin
    public var tickInterval: Double = 30
    public var heraldInterval: Double = 30
    public var history = 64
    public var historyTTL: Double = 300
    public var historyMemory = 64 << 20
    /// nil: one per core.
    public var threads: Int?
    /// Open public connections. nil: 100,000 or the descriptor limit less
    /// `maxAdminConnections`, `maxIngestConnections` and a small reserve, whichever is lower.
    public var maxConnections: Int?
    /// Open admin connections; their descriptors are kept out of the public listener's reach.
    public var maxAdminConnections = 256
    /// Open ingest connections; their descriptors are kept out of the public listener's reach.
    public var maxIngestConnections = 1024
    /// Open public connections per client address (IPv6 per /64); 0: no cap.
    public var maxConnectionsPerIP = 0
    /// TLS handshakes in progress per loop on the public listener; past it, new connections
    /// wait in the kernel's accept queue.
    public var maxHandshakes = 64
    /// SETTINGS_MAX_CONCURRENT_STREAMS of an HTTP/2 connection (H2_MAX_STREAMS).
    public var h2MaxStreams = 128
    /// Seconds to complete an ingest frame once its first byte arrived.
    public var frameTimeout: Double = 30
    public var maxHeaderBytes = 8 << 10
    public var maxBodyBytes = 1 << 20
    public var maxFrameBytes = 1 << 20
    public var streamBufferBytes = 4 << 20
    public var headerTimeout: Double = 10
    public var handshakeTimeout: Double = 10
    public var idleTimeout: Double = 60
    public var shutdownTimeout: Double = 5
    /// On SIGTERM or SIGINT, the time over which streams are closed, evenly spread, while
    /// admin and ingest keep serving; 0: close everything at once. Below `shutdownTimeout`.
    public var drainSeconds: Double = 0
    public var stateFile = "state/backdoor.json"
    public var logLevel = "info"
    /// The Redis servers of the cluster, in order; empty: one node on its own.
    public var redis: [RedisEndpoint] = []
    /// CA bundle for `rediss://` servers; nil: the system's CAs.
    public var redisCA: String?
    /// How long a publish waits for Redis before it fails.
    public var redisTimeout: Double = 0.5
    /// This node's name in logs, metrics and the cluster; nil: host name and public port.
    public var nodeName: String?
    /// What the browser waits before reconnecting, sent as the stream's `retry:` field.
    public var retryMilliseconds = 2000
    /// Seconds of uniform random share added, in whole ms, to each stream's `retry:`.
    public var retryJitter: Double = 3

    public init() {}
}

extension Double {
    var nanoseconds: UInt64 { UInt64((self * 1e9).rounded()) }
}
