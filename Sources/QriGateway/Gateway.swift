public import Logging
public import QriLoop
import QriTLS
#if canImport(Glibc)
import Glibc
#endif

/// The addresses a started gateway listens on.
public struct BoundAddresses: Sendable {
    public let `public`: SocketAddress
    public let admin: SocketAddress
    public let ingest: SocketAddress?

    /// The fixed, greppable start-up line.
    public var logLine: String {
        "listening public=\(self.public) admin=\(admin) ingest=\(ingest.map { "\($0)" } ?? "off")"
    }
}

/// A whole Qri gateway: its loops and their threads, the listeners on each, the shared
/// registry. Made from a validated configuration; `start()` binds and serves,
/// `shutdown()` stops.
public final class Gateway: @unchecked Sendable {
    let core: GatewayCore
    private let admin: AdminAPI
    private let store: any BackdoorStore
    private var workers: [LoopWorker] = []
    private var threads: [LoopThread] = []
    private let logger: Logger
    /// Session-ticket keys, kept across certificate reloads.
    private let ticketKeys = TicketKeys()

    /// Loads the certificate and sizes the limits; binds nothing yet.
    /// - Parameter exportMetrics: renders `/metrics`; nil when no metrics backend is set up.
    public init(configuration: GatewayConfiguration, logger: Logger,
                exportMetrics: (@Sendable () -> [UInt8])? = nil) throws(ConfigurationError) {
        self.logger = logger
        if let file = configuration.ticketKeyFile {
            do {
                let count = try ticketKeys.load(file: file)
                logger.info("ticket keys loaded", metadata: ["file": "\(file)", "keys": "\(count)"])
            } catch {
                throw ConfigurationError("--ticket-key-file: \(error)")
            }
        } else {
            ticketKeys.rotateRandom()
        }
        let tls: TLSContext
        do {
            tls = try Self.loadTLS(configuration, ticketKeys)
        } catch {
            throw ConfigurationError("cannot load certificate: \(error)")
        }
        let loops = configuration.threads ?? Gateway.coreCount()
        let descriptorLimit = ProcessSetup.raiseDescriptorLimit()
        let limits = ConnectionLimits.sized(
            maxConnections: configuration.maxConnections, maxAdmin: configuration.maxAdminConnections,
            maxIngest: configuration.maxIngestConnections, descriptorLimit: descriptorLimit, loops: loops)
        let clustered = !configuration.redis.isEmpty
        // In a cluster the histories live in Redis: the registry only finds a pair's streams.
        let registry = Registry(
            limits: .init(eventsPerPair: clustered ? 0 : configuration.history, ttlNanoseconds: configuration.historyTTL.nanoseconds,
                          memoryBytes: configuration.historyMemory),
            loopCount: loops)
        let cluster = clustered ? try ClusterNode(configuration: configuration, logger: logger) : nil
        try cluster?.verifyFingerprint()
        core = GatewayCore(configuration: configuration, registry: registry, metrics: GatewayMetrics(),
                           logger: logger, tls: tls, limits: limits, cluster: cluster)
        // The stored messages: in Redis for a cluster (STATE_FILE is not used), else in
        // the state file, read back now.
        if let cluster {
            let redisStore = RedisBackdoorStore(node: cluster, registry: registry)
            cluster.backdoor = redisStore
            store = redisStore
        } else {
            let stateFile = HeraldStateFile(path: configuration.stateFile)
            registry.loadHeralds(try stateFile.load())
            store = try FileBackdoorStore(file: stateFile, core: core)
        }
        admin = AdminAPI(core: core, store: store, exportMetrics: exportMetrics)
        core.metrics.certExpiry.record(Double(tls.notAfter))
        ProcessSetup.ignoreBrokenPipe()
        logger.info("certificate loaded", metadata: ["subject": "\(tls.subject)", "not_after": "\(tls.notAfter)"])
        Self.logOCSP(tls, configuration, logger)
        logger.info("limits", metadata: [
            "threads": "\(loops)", "max_connections": "\(limits.public)", "max_admin_connections": "\(limits.admin)",
            "max_ingest_connections": "\(limits.ingest)", "descriptor_limit": "\(descriptorLimit)",
        ])
        for note in limits.notes { logger.warning("\(note)") }
    }

    public var configuration: GatewayConfiguration { core.configuration }

    /// Binds every listener on every loop and starts the loop threads.
    public func start() throws(SystemError) -> BoundAddresses {
        let configuration = core.configuration
        let loopCount = core.registry.loopCount
        for i in 0..<loopCount {
            workers.append(LoopWorker(loop: try EventLoop(index: i), gateway: core, admin: admin))
        }
        core.registry.attach(workers)
        if let cluster = core.cluster {
            cluster.start(workers: workers)
            for (worker, part) in zip(workers, cluster.loops) { worker.clusterLoop = part }
        }
        core.attach(workers)
        let publicAddress = try bind(configuration.listen, kind: .public)
        let adminAddress = try bind(configuration.adminListen, kind: .admin)
        let ingestAddress = try configuration.ingestListen.map { (a) throws(SystemError) in try bind(a, kind: .ingest) }
        if configuration.ticketKeyFile == nil, let first = workers.first {
            // A new random key every hour; the previous one still decrypts for the next hour.
            let keys = ticketKeys
            first.loop.every(nanoseconds: Self.ticketKeyRotation) { keys.rotateRandom() }
        }
        for worker in workers {
            threads.append(LoopThread(name: "qri-loop-\(worker.index)") { worker.loop.run() })
        }
        return BoundAddresses(public: publicAddress, admin: adminAddress, ingest: ingestAddress)
    }

    /// One listening socket per loop on the same address (SO_REUSEPORT): the kernel spreads
    /// connections over the loops. Port 0 is resolved by the first bind.
    private func bind(_ address: SocketAddress, kind: GatewayMetrics.Listener) throws(SystemError) -> SocketAddress {
        var resolved = address
        for worker in workers {
            // The public backlog holds a reconnect storm while MAX_HANDSHAKES keeps it waiting
            // (the kernel caps it at net.core.somaxconn).
            let socket = try ListeningSocket(address: resolved, reusePort: true, backlog: kind == .public ? 65535 : 4096)
            resolved = socket.address
            try worker.listen(on: socket, kind: kind)
        }
        return resolved
    }

    /// Re-reads the certificate and key; on success new handshakes use them, on failure the
    /// old ones stay. Returns whether it succeeded.
    @discardableResult
    public func reloadCertificate() -> Bool {
        let configuration = core.configuration
        do {
            let tls = try Self.loadTLS(configuration, ticketKeys)
            core.replaceTLSContext(tls)
            core.metrics.certReloadsOK.increment()
            core.metrics.certExpiry.record(Double(tls.notAfter))
            logger.notice("certificate reloaded", metadata: ["subject": "\(tls.subject)", "not_after": "\(tls.notAfter)"])
            Self.logOCSP(tls, configuration, logger)
            return true
        } catch {
            core.metrics.certReloadsFailed.increment()
            logger.error("certificate reload failed; keeping the old certificate", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The certificate, key and OCSP response, as at start-up and on SIGHUP.
    private static func loadTLS(_ configuration: GatewayConfiguration, _ ticketKeys: TicketKeys) throws(TLSError) -> TLSContext {
        try TLSContext(certificateFile: configuration.certificateFile, keyFile: configuration.keyFile,
                       ocspFile: configuration.ocspFile, ticketKeys: ticketKeys)
    }

    private static let ticketKeyRotation: UInt64 = 3600 * 1_000_000_000

    /// Re-reads TICKET_KEY_FILE (on SIGHUP, whatever becomes of the certificate); a file that
    /// cannot be read or is malformed leaves the keys in use. Returns whether it succeeded;
    /// true without a file.
    @discardableResult
    public func reloadTicketKeys() -> Bool {
        guard let file = core.configuration.ticketKeyFile else { return true }
        do {
            let count = try ticketKeys.load(file: file)
            logger.notice("ticket keys reloaded", metadata: ["file": "\(file)", "keys": "\(count)"])
            return true
        } catch {
            logger.error("ticket key reload failed; keeping the old keys", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Whether the `--ocsp-file` response is stapled, and until when (or why not).
    private static func logOCSP(_ tls: TLSContext, _ configuration: GatewayConfiguration, _ logger: Logger) {
        guard let ocsp = tls.ocsp, let file = configuration.ocspFile else { return }
        let (stapled, text) = ocsp.summary(now: Int64(time(nil)))
        logger.log(level: stapled ? .info : .warning, "OCSP response \(text)", metadata: ["file": "\(file)"])
    }

    /// The paced part of a shutdown (DRAIN_SECONDS): stops accepting on the public listener,
    /// `/readyz` answers 503, each loop closes its streams evenly spread over `seconds`, and
    /// admin and ingest keep serving. Returns once no public connection is left, or a little
    /// after `seconds` (never past `budget`, the shutdown timeout). Call `shutdown()` next.
    public func drain(seconds: Double, budget: Double) {
        core.draining = true
        for worker in workers {
            worker.loop.execute { worker.startDraining(seconds: seconds) }
        }
        let start = Clock.monotonicNanoseconds()
        let limit = start + min(seconds + 1, max(seconds, budget - 0.25)).nanoseconds
        while core.openConnections(.public) > 0 && Clock.monotonicNanoseconds() < limit {
            usleep(10_000)
        }
    }

    /// Stops accepting, closes every connection with a close_notify, stops the loops and
    /// waits for their threads.
    public func shutdown() {
        for worker in workers {
            worker.loop.execute { worker.shutdown() }
            worker.loop.stop()
        }
        for thread in threads { thread.join() }
        threads = []
        // The loops have stopped: break the cycles (core and registry ↔ workers), so that the
        // loops and their descriptors are freed with this gateway.
        core.detach()
        core.registry.detach()
        core.cluster?.detach()
        for worker in workers { worker.clusterLoop = nil }
        workers = []
        store.stop()
    }

    static func coreCount() -> Int {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 1
        #endif
    }
}
