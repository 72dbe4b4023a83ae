/// What one `qri-bench` run does, from the command line.
struct BenchOptions {
    enum Scenario: String, CaseIterable {
        case idle, targeted, broadcast, handshake, ingest, smoke, storm, restart
        /// The storm's second process (spawned by `storm`): waves of new streams.
        case stormWave = "storm-wave"
    }

    enum PublishVia: String, CaseIterable {
        /// The BER ingest port (qri-py wire format).
        case ingest
        /// Qri's `POST /publish` on the admin port, one message a request (form body).
        case publish
        /// Qri's `POST /publish` with NDJSON bodies of `--batch` messages.
        case publishBatch = "publish-batch"
        /// Qri's `POST /backdoor` on the admin port (broadcasts).
        case backdoor
        /// Plain HTTP POSTs of the raw message to `publishPath` (Nchan's publisher).
        case http
    }

    var scenario: Scenario
    var label: String
    var host: String
    var port: UInt16
    var serverName: String
    var caFile: String?
    var streamPath: String
    var conns: Int
    var peers: Int
    var ramp: Double
    var maxPending: Int
    var sourceAddresses: Int
    var rates: [Double]
    var duration: Double
    var drain: Double
    var window: Int
    var checkpoints: [Int]
    var settle: Double
    var count: Int
    var concurrency: Int
    var modes: [String]
    var messageBytes: Int
    var publishVia: PublishVia
    var ingestPort: UInt16?
    var adminPort: UInt16?
    var adminToken: String?
    var adminPlaintext: Bool
    var publishPort: UInt16?
    var publishPath: String
    var publishConnections: Int
    var pipeline: Int
    var broadcastPair: Bool
    var batch: Int
    /// The scenario name in RESULT lines (default: the scenario).
    var resultScenario: String
    /// Repetition number in RESULT lines (run.sh alternates servers and repeats).
    var rep: Int?
    /// More processes to sample next to the server (name, pid): e.g. redis-server.
    var samplePIDs: [(name: String, pid: Int32)]
    var serverPID: Int32?
    var serverCores: Double
    var maxSeconds: Double
    /// Storm: new streams per wave (opened by a second qri-bench process, `storm-wave`).
    var stormCount: Int
    /// Storm: seconds of publishing before the first wave (the baseline).
    var baseline: Double
    /// Storm: seconds a wave may take before its unopened streams count as timed out.
    var waveTimeout: Double
    /// Pair names start at u<offset>/c<offset> (the storm's new streams use pairs of their own).
    var pairOffset: Int
    /// Restart: the port streams reconnect to (another node of the cluster).
    var reconnectPort: UInt16?
    /// Restart: the node to send SIGTERM to after `--baseline` s.
    var killPID: Int32?
}
