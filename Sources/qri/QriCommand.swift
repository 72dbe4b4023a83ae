import Logging
import Metrics
import Prometheus
import QriGateway
import QriLoop
#if canImport(Glibc)
import Glibc
#endif

/// The `qri` command: reads the options (`Option.all`), starts the gateway, and turns signals
/// into reloads and shutdowns.
@main
enum QriCommand {
    /// Reads the command line; an error is one line on stderr and exit status 2, as for every
    /// other start-up error.
    static func main() {
        do {
            switch try CommandLineArguments.parse(Array(CommandLine.arguments.dropFirst())) {
            case .help:
                print(CommandLineArguments.help)
            case .run(let flags):
                runGateway(flags: flags)
            }
        } catch {
            fail("\(error) (see qri --help)")
        }
    }

    static func runGateway(flags: [String: String]) {
        let signals = [SIGHUP, SIGTERM, SIGINT]
        // Before any thread starts, so that only the wait below ever receives them.
        ProcessSetup.blockSignals(signals)
        let configuration: GatewayConfiguration
        do {
            configuration = try StartupConfiguration.load(flags: flags, environment: environment())
        } catch {
            fail("\(error)")
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
            fail("\(error)")
        }
        if configuration.adminToken == nil {
            logger.warning("no admin token configured: the admin listener refuses every request but /healthz; set --admin-token-file FILE or QRI_ADMIN_TOKEN")
        }
        if let file = configuration.adminTokenFile, let warning = StartupConfiguration.tokenFileWarning(file) {
            logger.warning("\(warning)")
        }
        // Printed whatever LOG_LEVEL says: tools find the chosen ports by it.
        var always = logger
        always.logLevel = .trace
        always.info("\(addresses.logLine)")
        while true {
            let signal = ProcessSetup.waitForSignal(signals)
            if signal == SIGHUP {
                gateway.reloadCertificate()
                gateway.reloadTicketKeys()
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
            if configuration.drainSeconds > 0 {
                logger.notice("draining streams", metadata: ["seconds": "\(configuration.drainSeconds)"])
                gateway.drain(seconds: configuration.drainSeconds, budget: budget)
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
