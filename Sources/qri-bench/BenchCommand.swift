import ArgumentParser
import QriLoop
#if canImport(Glibc)
import Glibc
#endif

/// `qri-bench`: the load generator shipped with Qri, as `redis-benchmark` ships with Redis.
@main
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qri-bench",
        abstract: "Load generator for Qri (and Nchan): SSE streams over TLS, publishers, latency and server cost.",
        discussion: """
        Scenarios: idle (RSS at --checkpoints open streams), targeted (messages to random pairs at \
        each of --rates, 0 = flat out), broadcast (backdoor broadcasts at each of --rates), \
        handshake (--count stream openings, fresh and resumed), ingest (one publisher flat out), \
        smoke (a short targeted run that fails when no event arrives), \
        storm (--conns streams get targeted messages at the first of --rates; after --baseline s a second \
        qri-bench process opens --storm new streams at once, per --modes: fresh TLS, then resumed with the \
        tickets of the fresh wave; reports the time until all are open, the existing streams' latency during \
        each wave, server CPU per new stream and failed or timed-out openings), \
        restart (--conns streams on --port get targeted messages at the first of --rates; after --baseline s \
        --kill-pid gets SIGTERM; every stream its server closes reconnects after its retry: delay to \
        --reconnect-port with Last-Event-ID; reports reconnections per second and messages lost). Messages go in over --publish: \
        the ingest port, POST /publish one at a time or in NDJSON batches of --batch, POST /backdoor, \
        or raw POSTs to Nchan's publisher; HTTP publishers keep --publish-connections connections \
        with --pipeline requests in flight each, a pair always on the same connection. Each measured \
        step prints one line `RESULT key=value …`; a table follows at the end. Single-threaded and \
        non-blocking; loopback only. With --server-pid, server RSS and CPU come from /proc; --sample-pid adds another process \
        (redis-server) beside it.
        """)

    @Argument(help: "idle, targeted, broadcast, handshake, ingest, smoke, storm, restart (storm-wave is storm's helper).") var scenario: String

    @Option(help: "Label for the RESULT lines (qri, nchan, …).") var label = "qri"
    @Option(help: "Server address (loopback only).") var host = "127.0.0.1"
    @Option(help: "Public TLS port.") var port: UInt16
    @Option(name: .customLong("server-name"), help: "SNI and Host.") var serverName = "localhost"
    @Option(name: .customLong("ca-file"), help: "Verify the server against this PEM file (default: no verification).") var caFile: String?
    @Option(name: .customLong("stream-path"), help: "Stream request path; {p} and {s} are the pair.") var streamPath = "/stream?p={p}&s={s}"

    @Option(help: "Streams to hold.") var conns = 10_000
    @Option(help: "Pairs the streams spread over (default: one per stream).") var peers: Int?
    @Option(help: "Stream openings per second while ramping up.") var ramp = 2000.0
    @Option(name: .customLong("max-pending"), help: "Handshakes in flight while ramping up.") var maxPending = 256
    @Option(name: .customLong("source-addresses"), help: "Source addresses 127.0.0.2… to spread streams over (0: kernel's choice).") var sourceAddresses = 8

    @Option(help: "Publish rates per second, comma-separated; 0 = flat out.") var rates = "1000,5000,20000,0"
    @Option(help: "Seconds per publishing step.") var duration = 10.0
    @Option(help: "Seconds to wait for stragglers after a step.") var drain = 3.0
    @Option(help: "Events in flight when publishing flat out.") var window = 4000
    @Option(help: "Idle scenario: stream counts to measure RSS at.") var checkpoints = "0,1000,10000,19000"
    @Option(help: "Idle scenario: seconds to wait before sampling.") var settle = 2.0
    @Option(help: "Handshake scenario: stream openings per mode.") var count = 5000
    @Option(help: "Handshake scenario: openings in flight.") var concurrency = 64
    @Option(help: "Handshake scenario: fresh, resumed or both.") var modes = "fresh,resumed"
    @Option(name: .customLong("message-bytes"), help: "Message size (stamp plus padding).") var messageBytes = 64

    @Option(help: "ingest, publish (single POST /publish), publish-batch (NDJSON POST /publish), backdoor (Qri admin API) or http (raw POST, Nchan).") var publish = "ingest"
    @Option(name: .customLong("ingest-port"), help: "Qri's BER ingest port.") var ingestPort: UInt16?
    @Option(name: .customLong("admin-port"), help: "Qri's admin port.") var adminPort: UInt16?
    @Option(name: .customLong("admin-token-file"), help: "File with Qri's admin bearer token.") var adminTokenFile: String?
    @Flag(name: .customLong("admin-plaintext"), help: "The admin port speaks plain HTTP.") var adminPlaintext = false
    @Option(name: .customLong("publish-port"), help: "Plain HTTP publisher port (Nchan).") var publishPort: UInt16?
    @Option(name: .customLong("publish-path"), help: "Publisher path; {p} and {s} are the pair.") var publishPath = "/pub?p={p}&s={s}"
    @Option(name: .customLong("publish-connections"), help: "Publisher connections.") var publishConnections = 1
    @Option(help: "HTTP requests in flight per publisher connection.") var pipeline = 64
    @Option(help: "Messages per request with --publish publish-batch.") var batch = 100
    @Option(name: .customLong("result-scenario"), help: "Scenario name in the RESULT lines (default: the scenario).") var resultScenario: String?
    @Option(help: "Repetition number, added to the RESULT lines.") var rep: Int?
    @Option(name: .customLong("sample-pid"), help: "NAME:PID of another process to sample beside the server (CPU and RSS), e.g. redis:1234; repeatable.") var samplePID: [String] = []
    @Flag(name: .customLong("broadcast-pair"), help: "Every stream subscribes to the pair all/all (Nchan's broadcast channel).") var broadcastPair = false

    @Option(name: .customLong("server-pid"), help: "Server process to sample (/proc RSS and CPU).") var serverPID: Int32?
    @Option(name: .customLong("server-cores"), help: "Cores the server may use, to say whether it saturated.") var serverCores = 1.0
    @Option(name: .customLong("max-seconds"), help: "Hard bound on the whole run.") var maxSeconds = 300.0
    @Option(help: "Storm: new streams per wave (opened at once by a second process).") var storm = 8000
    @Option(help: "Storm: seconds of publishing before the first wave.") var baseline = 3.0
    @Option(name: .customLong("wave-timeout"), help: "Storm: seconds before a wave's unopened streams count as timed out.") var waveTimeout = 60.0
    @Option(name: .customLong("reconnect-port"), help: "Restart: the public port streams reconnect to.") var reconnectPort: UInt16?
    @Option(name: .customLong("kill-pid"), help: "Restart: the node to send SIGTERM to after --baseline s.") var killPID: Int32?
    @Option(name: .customLong("pair-offset"), help: "First pair number (storm-wave uses pairs of its own).") var pairOffset = 0

    func validate() throws {
        guard BenchOptions.Scenario(rawValue: scenario) != nil else {
            throw ValidationError("unknown scenario \(scenario); one of \(BenchOptions.Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard BenchOptions.PublishVia(rawValue: publish) != nil else { throw ValidationError("--publish: ingest, publish, publish-batch, backdoor or http") }
        for item in samplePID {
            let parts = item.split(separator: ":")
            guard parts.count == 2, !parts[0].isEmpty, Int32(parts[1]) != nil else { throw ValidationError("--sample-pid NAME:PID, not \(item)") }
        }
        if scenario == "restart" && (reconnectPort == nil || killPID == nil) {
            throw ValidationError("restart needs --reconnect-port and --kill-pid")
        }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        guard host.hasPrefix("127.") else { throw ValidationError("--host must be a loopback address (127.0.0.0/8)") }
        guard conns >= 0, storm > 0, baseline >= 0, waveTimeout > 0, pairOffset >= 0, ramp > 0, maxPending > 0, duration > 0, window > 0, count > 0, concurrency > 0 else {
            throw ValidationError("sizes must be positive")
        }
    }

    func run() throws {
        ProcessSetup.ignoreBrokenPipe()
        let limit = ProcessSetup.raiseDescriptorLimit()
        let scenario = BenchOptions.Scenario(rawValue: scenario)!
        var token: String?
        if let adminTokenFile {
            guard let text = ProcessStats.readFile(adminTokenFile) else { throw ValidationError("cannot read \(adminTokenFile)") }
            token = String(text.filter { !$0.isWhitespace })
        }
        let options = BenchOptions(
            scenario: scenario, label: label, host: host, port: port, serverName: serverName, caFile: caFile,
            streamPath: streamPath, conns: conns, peers: max(peers ?? (scenario == .stormWave ? storm : conns), 1), ramp: ramp, maxPending: maxPending,
            sourceAddresses: sourceAddresses,
            rates: rates.split(separator: ",").compactMap { Double($0.trimmingPrefix(" ")) },
            duration: duration, drain: drain, window: window,
            checkpoints: checkpoints.split(separator: ",").compactMap { Int($0) }, settle: settle,
            count: count, concurrency: concurrency, modes: modes.split(separator: ",").map(String.init),
            messageBytes: max(messageBytes, 8), publishVia: BenchOptions.PublishVia(rawValue: publish)!,
            ingestPort: ingestPort, adminPort: adminPort, adminToken: token, adminPlaintext: adminPlaintext,
            publishPort: publishPort, publishPath: publishPath, publishConnections: publishConnections,
            pipeline: pipeline, broadcastPair: broadcastPair, batch: batch,
            resultScenario: resultScenario ?? scenario.rawValue, rep: rep,
            samplePIDs: samplePID.map { item in
                let parts = item.split(separator: ":")
                return (String(parts[0]), Int32(parts[1])!)
            },
            serverPID: serverPID, serverCores: serverCores,
            maxSeconds: maxSeconds, stormCount: storm, baseline: baseline, waveTimeout: waveTimeout,
            pairOffset: pairOffset, reconnectPort: reconnectPort, killPID: killPID)
        let needed = (scenario == .idle ? options.checkpoints.max() ?? 0 : scenario == .stormWave ? options.stormCount : options.conns) + 64
        if scenario != .handshake && needed > limit {
            print("qri-bench: warning: \(needed) descriptors wanted, the limit is \(limit)")
        }
        let bench = try Bench(options: options)
        let status = bench.run()
        if status != 0 { throw ExitCode(status) }
    }
}
