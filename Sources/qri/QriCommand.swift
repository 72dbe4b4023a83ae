import ArgumentParser
import Logging
import Metrics
import Prometheus
import QriGateway
import QriLoop
#if canImport(Glibc)
import Glibc
#endif

/// The `qri` command: parses options, starts the gateway, and turns signals into reloads
/// and shutdowns.
@main
struct QriCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qri",
        abstract: "A TLS-terminating Server-Sent-Events gateway.",
        discussion: """
        Every option is also an environment variable QRI_<NAME> (QRI_ADMIN_LISTEN for \
        --admin-listen) and a key of the YAML config file (admin-listen: 127.0.0.1:9443). \
        Precedence: flag > environment > config file > default. The admin token comes from \
        --admin-token-file or QRI_ADMIN_TOKEN. SIGHUP reloads the certificate; SIGTERM and \
        SIGINT shut down gracefully.
        """)

    @Option(help: "Config file (YAML).") var config: String?
    @Option(help: "Public HTTPS listener, HOST:PORT (default 0.0.0.0:8443).") var listen: String?
    @Option(name: .customLong("admin-listen"), help: "Admin listener, HOST:PORT (default 127.0.0.1:9443).") var adminListen: String?
    @Option(name: .customLong("ingest-listen"), help: "BER ingest listener, HOST:PORT or off (default 127.0.0.1:5679).") var ingestListen: String?
    @Option(help: "PEM certificate, optionally followed by its chain (default certs/server.crt).") var cert: String?
    @Option(help: "PEM private key (default certs/server.key).") var key: String?
    @Option(name: .customLong("admin-token-file"), help: "File holding the admin bearer token.") var adminTokenFile: String?
    @Flag(name: .customLong("admin-plaintext"), help: "Serve the admin listener as plain HTTP.") var adminPlaintext = false
    @Option(name: .customLong("cors-origins"), help: "Allowed origins: * or a comma-separated list (default *).") var corsOrigins: String?
    @Option(name: .customLong("tick-interval"), help: "Keep-alive Tick period, seconds (default 30).") var tickInterval: String?
    @Option(name: .customLong("herald-interval"), help: "Stored backdoor re-broadcast period, seconds (default 30).") var heraldInterval: String?
    @Option(help: "Events kept per (peer, checksum) for resume; 0 = off (default 64).") var history: String?
    @Option(name: .customLong("history-ttl"), help: "Seconds a pair's history outlives its last stream or message (default 300).") var historyTTL: String?
    @Option(name: .customLong("history-memory"), help: "Bound on all histories together, K/M/G (default 64M).") var historyMemory: String?
    @Option(help: "Event-loop threads (default: cores).") var threads: String?
    @Option(name: .customLong("max-connections"), help: "Open connections, all listeners (default: 100000 or the descriptor limit less a reserve).") var maxConnections: String?
    @Option(name: .customLong("ocsp-file"), help: "DER OCSP response to staple while valid; re-read on SIGHUP.") var ocspFile: String?
    @Option(name: .customLong("max-header-bytes"), help: "Request line + headers (default 8K).") var maxHeaderBytes: String?
    @Option(name: .customLong("max-body-bytes"), help: "Admin request body (default 1M).") var maxBodyBytes: String?
    @Option(name: .customLong("max-frame-bytes"), help: "One ingest frame (default 1M).") var maxFrameBytes: String?
    @Option(name: .customLong("stream-buffer-bytes"), help: "Unsent bytes a stream may hold (default 4M).") var streamBufferBytes: String?
    @Option(name: .customLong("header-timeout"), help: "Seconds to receive a request head (default 10).") var headerTimeout: String?
    @Option(name: .customLong("handshake-timeout"), help: "Seconds to complete the TLS handshake (default 10).") var handshakeTimeout: String?
    @Option(name: .customLong("idle-timeout"), help: "Seconds an admin keep-alive connection may wait (default 60).") var idleTimeout: String?
    @Option(name: .customLong("shutdown-timeout"), help: "Graceful shutdown budget, seconds (default 5).") var shutdownTimeout: String?
    @Option(name: .customLong("state-file"), help: "Where stored backdoor messages are kept (default state/backdoor.json).") var stateFile: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical (default info).") var logLevel: String?

    /// The options given on the command line, by name.
    private var flagValues: [String: String] {
        var values: [String: String?] = [
            "config": config, "listen": listen, "admin-listen": adminListen, "ingest-listen": ingestListen,
            "cert": cert, "key": key, "admin-token-file": adminTokenFile, "cors-origins": corsOrigins,
            "tick-interval": tickInterval, "herald-interval": heraldInterval, "history": history,
            "history-ttl": historyTTL, "history-memory": historyMemory, "threads": threads,
            "max-connections": maxConnections, "ocsp-file": ocspFile, "max-header-bytes": maxHeaderBytes, "max-body-bytes": maxBodyBytes,
            "max-frame-bytes": maxFrameBytes, "stream-buffer-bytes": streamBufferBytes,
            "header-timeout": headerTimeout, "handshake-timeout": handshakeTimeout, "idle-timeout": idleTimeout,
            "shutdown-timeout": shutdownTimeout, "state-file": stateFile, "log-level": logLevel,
        ]
        if adminPlaintext { values["admin-plaintext"] = "true" }
        return values.compactMapValues { $0 }
    }

    /// Parses the command line; an error is one line on stderr and exit status 2, as for
    /// every other start-up error.
    static func main() {
        let command: QriCommand
        do {
            command = try parse()
        } catch {
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "bad command line"
            fail(message + " (see qri --help)")
        }
        command.runGateway()
    }

    func runGateway() {
        let signals = [SIGHUP, SIGTERM, SIGINT]
        // Before any thread starts, so that only the wait below ever receives them.
        ProcessSetup.blockSignals(signals)
        let configuration: GatewayConfiguration
        do {
            configuration = try StartupConfiguration.load(flags: flagValues, environment: Self.environment())
        } catch {
            Self.fail("\(error)")
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "qri")
        let prometheus = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: prometheus))
        let gateway: Gateway
        let addresses: BoundAddresses
        do {
            gateway = try Gateway(configuration: configuration, logger: logger, exportMetrics: { prometheus.emitToBuffer() })
            addresses = try gateway.start()
        } catch {
            Self.fail("\(error)")
        }
        if configuration.adminToken == nil {
            logger.warning("no admin token configured: the admin listener refuses every request but /healthz; set --admin-token-file FILE or QRI_ADMIN_TOKEN")
        }
        logger.info("\(addresses.logLine)")
        while true {
            let signal = ProcessSetup.waitForSignal(signals)
            if signal == SIGHUP {
                gateway.reloadCertificate()
                continue
            }
            logger.notice("shutting down", metadata: ["signal": "\(signal)"])
            // The budget is a promise to the supervisor: past it, leave whatever is left.
            let budget = configuration.shutdownTimeout
            _ = LoopThread(name: "qri-shutdown") {
                usleep(UInt32(min(budget, 3600) * 1_000_000))
                let line = "qri: shutdown budget of \(budget) s exceeded; exiting\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
                Glibc._exit(0)
            }
            gateway.shutdown()
            logger.notice("stopped")
            return
        }
    }

    /// Prints a one-line error and exits non-zero.
    static func fail(_ message: String) -> Never {
        var line = "qri: \(message)\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        Glibc.exit(2)
    }

    static func environment() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                result[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            pointer += 1
        }
        return result
    }
}
