import QriLoop
import QriTLS
#if canImport(Glibc)
import Glibc
#endif

/// The load generator: one event loop, one thread, every connection non-blocking. A run is
/// a list of phases (open streams, wait, publish at a rate, churn handshakes …) advanced by
/// a 1 ms timer; each measuring phase emits one `RESULT` line.
final class Bench {
    struct Phase {
        let start: () -> Void
        /// Returns true when the phase is over.
        let poll: () -> Bool
    }

    let options: BenchOptions
    let loop: EventLoop
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
    let tls: TLSClientContext
    private var connector: Connector
    private let adminTLS: TLSClientContext?

    // Streams
    private var streams: [Int: SSEStream] = [:]
    private var nextStreamID = 0
    private var pairStreams: [Int]
    private(set) var openStreams = 0
    private var liveStreams = 0
    private var pendingStreams: Int { liveStreams - openStreams }
    private var streamFailures = 0
    private var lastFailure = ""
    private var droppedAfterOpen = 0
    private var pairNameCache: [([UInt8], [UInt8])?]

    // Publishing
    private var publishers: [any Publisher] = []
    private var nextPublisher = 0
    private var random = XorShift(seed: 0x9E37_79B9_7F4A_7C15)

    // The measured step
    private var step = 0
    private var histogram = Histogram()
    private var delivered = 0
    private var repeats = 0
    private var expected = 0
    private var published = 0
    private var lastDeliveryAt: UInt64 = 0
    private var broadcastMode = false
    private var broadcastSentAt: [UInt64] = []
    private var broadcastExpected: [Int] = []
    private var broadcastReceived: [Int] = []
    private var broadcastLast: [UInt64] = []

    // Handshake churn
    private var churning = false
    private var churnResumed = false
    private var churnDone = 0
    private var churnFailed = 0
    private var churnReused = 0
    private var latestSession: TLSSession?

    // Restart: streams closed by their server and their reconnections
    struct Reconnect {
        var pair: Int
        var lastEventID: [UInt8]
        var lastStep: Int
        var lastSeq: Int
        var retry: Int?
    }
    private var reconnecting = false
    private var reconnectQueue: [UInt64: [Reconnect]] = [:]
    private var reconnectScannedMs: UInt64 = 0
    private var closeTimes: [UInt64] = []
    private var reopenTimes: [UInt64] = []
    private var reconnectFailures = 0
    private lazy var reconnectConnector = Connector(host: options.host, port: options.reconnectPort ?? options.port,
                                                    sourceAddresses: options.sourceAddresses)

    // Storm: the holder's latency samples (send time, latency), the waves its helper reports
    private var stormRecording = false
    private var stormSamples: [(sentAt: UInt64, latency: UInt64)] = []
    private var stormStalls: [(at: UInt64, gap: UInt64)] = []
    // Storm helper (storm-wave): the wave in progress
    private var waveActive = false
    private var waveOpened = 0
    private var waveFailed = 0
    private var waveReused = 0
    private var waveLastOpenAt: UInt64 = 0
    private var waveSessions: [TLSSession?] = []

    private var phases: [Phase] = []
    private var phaseIndex = -1
    private let deadline: UInt64
    private(set) var results: [ResultLine] = []
    private(set) var failure: String?
    private var idleBaseline: Int?
    private lazy var otherIdleBaselines: [Int?] = Array(repeating: nil, count: options.samplePIDs.count)

    init(options: BenchOptions) throws {
        self.options = options
        loop = try EventLoop(index: 0)
        tls = try TLSClientContext(caFile: options.caFile, serverName: options.serverName)
        adminTLS = options.adminPlaintext ? nil : tls
        connector = Connector(host: options.host, port: options.port, sourceAddresses: options.sourceAddresses)
        pairStreams = [Int](repeating: 0, count: max(options.peers, 1))
        pairNameCache = Array(repeating: nil, count: max(options.peers, 1))
        deadline = Clock.monotonicNanoseconds() + UInt64(options.maxSeconds * 1e9)
    }

    deinit { readBuffer.deallocate() }

    // MARK: Running

    /// Runs the scenario to its end; returns the process exit status.
    func run() -> Int32 {
        phases = makePhases()
        loop.every(nanoseconds: 1_000_000) { [unowned self] in self.advance() }
        advance()
        loop.run()
        for stream in Array(streams.values) { stream.close(reason: "end") }
        for publisher in publishers { (publisher as? BenchConnection)?.close(reason: "end") }
        if helperPID > 0 {
            kill(helperPID, SIGTERM)
            var status: Int32 = 0
            waitpid(helperPID, &status, 0)
        }
        print("")
        print("qri-bench \(options.scenario.rawValue) against \(options.label):")
        print(Report.table(results), terminator: "")
        if let failure {
            print("qri-bench: FAILED: \(failure)")
            return 1
        }
        return 0
    }

    private func advance() {
        if failure == nil, Clock.monotonicNanoseconds() > deadline {
            failure = "run exceeded --max-seconds \(Int(options.maxSeconds))"
        }
        if failure != nil {
            loop.stop()
            return
        }
        if phaseIndex >= 0 && phaseIndex < phases.count && !phases[phaseIndex].poll() { return }
        phaseIndex += 1
        guard phaseIndex < phases.count else {
            loop.stop()
            return
        }
        phases[phaseIndex].start()
    }

    private func fail(_ why: String) {
        if failure == nil { failure = why }
    }

    private var now: UInt64 { Clock.monotonicNanoseconds() }

    // MARK: Scenarios

    private func makePhases() -> [Phase] {
        var list: [Phase] = []
        switch options.scenario {
        case .idle:
            for checkpoint in options.checkpoints.sorted() {
                list.append(rampTo(checkpoint))
                list.append(wait(options.settle))
                list.append(sampleIdle(checkpoint))
            }
        case .targeted, .smoke:
            // Publishers connect once the streams are open: an admin connection that sends
            // no request for HEADER_TIMEOUT (10 s) is closed, and a ramp can take longer.
            list.append(rampTo(options.conns))
            list.append(connectPublishers(options.publishVia, count: options.publishConnections))
            list.append(wait(1))
            for rate in options.rates { list.append(publishStep(rate: rate, broadcast: false, windowed: true)) }
        case .broadcast:
            list.append(connectPublishers(options.publishVia, count: 1))
            list.append(rampTo(options.conns))
            list.append(wait(1))
            for rate in options.rates { list.append(publishStep(rate: rate, broadcast: true, windowed: true)) }
        case .ingest:
            list.append(connectPublishers(options.publishVia, count: 1))
            list.append(rampTo(options.conns))
            list.append(wait(1))
            list.append(publishStep(rate: 0, broadcast: false, windowed: false))
        case .handshake:
            for mode in options.modes { list.append(churn(resumed: mode == "resumed")) }
        case .storm:
            list.append(rampTo(options.conns))
            list.append(connectPublishers(options.publishVia, count: options.publishConnections))
            list.append(wait(1))
            list.append(stormRun())
        case .restart:
            list.append(rampTo(options.conns))
            list.append(connectPublishers(options.publishVia, count: options.publishConnections))
            list.append(wait(1))
            list.append(restartRun())
        case .stormWave:
            // The helper shares the generator's core with the process that measures latency:
            // SCHED_IDLE lets the holder preempt it at once, so the holder's latency is the
            // server's, not the wait for the helper's time slice.
            var param = sched_param()
            let SCHED_IDLE: Int32 = 5 // <linux/sched.h>, not exported by Glibc's module
            if sched_setscheduler(0, SCHED_IDLE, &param) != 0 { print("qri-bench: warning: SCHED_IDLE: \(String(cString: strerror(errno)))") }
            for (i, mode) in options.modes.enumerated() {
                if i > 0 { list.append(wait(options.settle)) }
                list.append(wave(resumed: mode == "resumed"))
                list.append(wait(1))
                list.append(Phase(start: { [unowned self] in
                    for stream in Array(streams.values) { stream.close(reason: "wave over") }
                }, poll: { true }))
            }
        }
        return list
    }

    // MARK: Streams

    /// The (peer, checksum) of pair `index`; nil is the pair every stream shares in
    /// broadcast runs against Nchan (`--broadcast-pair`).
    func pairNames(_ index: Int?) -> (peer: [UInt8], checksum: [UInt8]) {
        guard let index, index >= 0, index < pairNameCache.count else { return (Array("all".utf8), Array("all".utf8)) }
        if let cached = pairNameCache[index] { return (cached.0, cached.1) }
        let n = index + options.pairOffset
        let names = (Array("u\(n)".utf8), Array("c\(n)".utf8))
        pairNameCache[index] = names
        return names
    }

    private func path(forPair pair: Int) -> String {
        let names = pairNames(options.broadcastPair ? nil : pair)
        var path = ""
        var rest = Substring(options.streamPath)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            path += rest[..<open]
            switch rest[rest.index(after: open)..<close] {
            case "p": path += String(decoding: names.peer, as: UTF8.self)
            case "s": path += String(decoding: names.checksum, as: UTF8.self)
            default: path += rest[open...close]
            }
            rest = rest[rest.index(after: close)...]
        }
        return path + rest
    }

    @discardableResult
    private func startStream(closeWhenOpen: Bool = false, session: TLSSession? = nil) -> Bool {
        let id = nextStreamID
        nextStreamID += 1
        let pair = id % max(options.peers, 1)
        do {
            let fd = try connector.connect()
            let stream = try SSEStream(bench: self, fd: fd, id: id, pair: pair, path: path(forPair: pair),
                                       closeWhenOpen: closeWhenOpen, session: session)
            streams[id] = stream
            liveStreams += 1
            return true
        } catch {
            streamFailures += 1
            lastFailure = "\(error)"
            if churning { churnFailed += 1 }
            if waveActive { waveFailed += 1 }
            return false
        }
    }

    func streamOpened(_ stream: SSEStream) {
        if churning {
            histogram.record(now - stream.startedAt)
            churnDone += 1
            if let transport = stream.tlsTransport {
                if transport.sessionReused { churnReused += 1 }
                if churnResumed, let session = transport.session { latestSession = session }
            }
            stream.close(reason: "opened")
            return
        }
        if waveActive {
            waveOpened += 1
            waveLastOpenAt = now
            if let transport = stream.tlsTransport {
                if transport.sessionReused { waveReused += 1 }
                if let session = transport.session { waveSessions[stream.id % waveSessions.count] = session }
            }
        }
        openStreams += 1
        if stream.isReconnect {
            reopenTimes.append(now)
            return
        }
        pairStreams[stream.pair] += 1
    }

    func streamClosed(_ stream: SSEStream, reason: String) {
        streams[stream.id] = nil
        liveStreams -= 1
        if reconnecting && !stream.closeWhenOpen {
            // Restart: the stream comes back on the other node after its retry: delay; its pair
            // keeps counting it, so what it misses meanwhile counts as lost unless replayed.
            if stream.isOpen {
                openStreams -= 1
                closeTimes.append(now)
            } else {
                streamFailures += 1
                lastFailure = reason
                guard stream.isReconnect else { return }
                reconnectFailures += 1
            }
            let delay = UInt64(stream.retryMilliseconds ?? 2000) * 1_000_000
            let due = (now + delay) / 1_000_000
            reconnectQueue[due, default: []].append(Reconnect(pair: stream.pair, lastEventID: stream.lastEventID,
                                                             lastStep: stream.lastStep, lastSeq: stream.lastSeq,
                                                             retry: stream.retryMilliseconds))
            return
        }
        if stream.isOpen {
            if stream.closeWhenOpen { return }
            openStreams -= 1
            pairStreams[stream.pair] -= 1
            droppedAfterOpen += 1
            lastFailure = reason
        } else {
            streamFailures += 1
            lastFailure = reason
            if churning { churnFailed += 1 }
            if waveActive { waveFailed += 1 }
        }
    }

    func streamEvent(_ stream: SSEStream, _ stamp: Stamp?) {
        guard let stamp, stamp.step == step else { return }
        // Each stream sees a step's messages in publishing order: an older one is a repeat.
        if stream.lastStep == stamp.step && stamp.seq <= stream.lastSeq {
            repeats += 1
            return
        }
        stream.lastStep = stamp.step
        stream.lastSeq = stamp.seq
        let t = now
        if stormRecording { stormSamples.append((stamp.sentAt, t &- stamp.sentAt)) }
        histogram.record(t &- stamp.sentAt)
        delivered += 1
        lastDeliveryAt = t
        if broadcastMode, stamp.seq < broadcastReceived.count {
            broadcastReceived[stamp.seq] += 1
            broadcastLast[stamp.seq] = t
        }
    }

    /// Opens streams until `target` are open, at most `--ramp` per second and
    /// `--max-pending` handshakes at once; reopens streams that fail, within bounds.
    private func rampTo(_ target: Int) -> Phase {
        var startedAt: UInt64 = 0
        var attempts = 0
        var base = 0
        return Phase(start: { [unowned self] in
            startedAt = now
            base = liveStreams
        }, poll: { [unowned self] in
            if openStreams >= target { return true }
            let elapsed = Double(now - startedAt) / 1e9
            let allowed = Int(options.ramp * elapsed) + 1
            let maxAttempts = 2 * (target - base) + 1000
            while liveStreams < target, attempts < allowed, pendingStreams < options.maxPending, attempts < maxAttempts {
                attempts += 1
                startStream()
            }
            let limit = Double(target - base) / options.ramp + 30
            if elapsed > limit || (attempts >= maxAttempts && liveStreams == openStreams) {
                print("qri-bench: holding \(openStreams) of \(target) streams after \(Int(elapsed)) s (failures \(streamFailures), last: \(lastFailure))")
                if openStreams == 0 && target > 0 { fail("no stream could be opened: \(lastFailure)") }
                return true
            }
            return false
        })
    }

    private func wait(_ seconds: Double) -> Phase {
        var until: UInt64 = 0
        return Phase(start: { [unowned self] in until = now + UInt64(seconds * 1e9) },
                     poll: { [unowned self] in now >= until })
    }

    // MARK: Idle memory

    private func sampleIdle(_ checkpoint: Int) -> Phase {
        Phase(start: {}, poll: { [unowned self] in
            var r = header(step: "\(checkpoint)")
            r.set("streams", openStreams)
            if let pid = options.serverPID, let s = ProcessStats.sample(pid: pid) {
                if idleBaseline == nil || checkpoint == 0 { idleBaseline = s.rssBytes }
                r.set("rss_kb", s.rssBytes / 1024)
                r.set("rss_mb", Double(s.rssBytes) / 1048576, digits: 1)
                let base = idleBaseline ?? s.rssBytes
                r.set("rss_delta_kb", (s.rssBytes - base) / 1024)
                if openStreams > 0 { r.set("bytes_per_stream", (s.rssBytes - base) / openStreams) }
            }
            for (i, other) in options.samplePIDs.enumerated() {
                guard let s = ProcessStats.sample(pid: other.pid) else { continue }
                if checkpoint == 0 || otherIdleBaselines[i] == nil { otherIdleBaselines[i] = s.rssBytes }
                r.set("\(other.name)_rss_kb", s.rssBytes / 1024)
                if openStreams > 0 { r.set("\(other.name)_bytes_per_stream", (s.rssBytes - (otherIdleBaselines[i] ?? s.rssBytes)) / openStreams) }
            }
            r.set("client_rss_mb", Double(ProcessStats.sampleSelf().rssBytes) / 1048576, digits: 1)
            r.set("failures", streamFailures)
            r.set("dropped", droppedAfterOpen)
            record(r)
            return true
        })
    }

    // MARK: Publishing

    private func connectPublishers(_ via: BenchOptions.PublishVia, count: Int) -> Phase {
        var startedAt: UInt64 = 0
        return Phase(start: { [unowned self] in
            startedAt = now
            for _ in 0..<max(count, 1) {
                do {
                    switch via {
                    case .ingest:
                        guard let port = options.ingestPort else { return fail("--ingest-port is needed to publish over ingest") }
                        var c = Connector(host: options.host, port: port, sourceAddresses: 0)
                        publishers.append(try IngestPublisher(bench: self, fd: try c.connect(), tls: nil))
                    case .publish, .publishBatch, .backdoor:
                        guard let port = options.adminPort else { return fail("--admin-port is needed to publish over the admin API") }
                        var c = Connector(host: options.host, port: port, sourceAddresses: 0)
                        let kind: HTTPPublisher.Kind = switch via {
                        case .publish: .qriPublish
                        case .publishBatch: .qriBatch(size: options.batch)
                        default: .qriBackdoor
                        }
                        publishers.append(try HTTPPublisher(bench: self, fd: try c.connect(), tls: adminTLS,
                                                            kind: kind,
                                                            token: options.adminToken, maxOutstanding: options.pipeline))
                    case .http:
                        guard let port = options.publishPort else { return fail("--publish-port is needed to publish over HTTP") }
                        var c = Connector(host: options.host, port: port, sourceAddresses: 0)
                        publishers.append(try HTTPPublisher(bench: self, fd: try c.connect(), tls: nil,
                                                            kind: .rawBody(pathTemplate: options.publishPath),
                                                            token: nil, maxOutstanding: options.pipeline))
                    }
                } catch {
                    return fail("cannot connect the publisher: \(error)")
                }
            }
        }, poll: { [unowned self] in
            if publishers.allSatisfy({ ($0 as? BenchConnection)?.phase == .ready }) { return true }
            if let closed = publishers.first(where: { $0.isClosed }) { fail("publisher closed: \(closed.lastError)") }
            if now - startedAt > 10_000_000_000 { fail("publisher did not connect in 10 s") }
            return false
        })
    }

    /// Publishes timed messages for `--duration` at `rate` per second (0: flat out; with
    /// `windowed`, at most `--window` events in flight), then waits up to `--drain` for
    /// the stragglers, and reports.
    private func publishStep(rate: Double, broadcast: Bool, windowed: Bool) -> Phase {
        var startedAt: UInt64 = 0
        var publishEnd: UInt64 = 0
        var serverBefore: ProcessSample?
        var othersBefore: [ProcessSample?] = []
        var clientBefore = ProcessStats.sampleSelf()
        var message: [UInt8] = []
        let duration = UInt64(options.duration * 1e9)
        return Phase(start: { [unowned self] in
            step += 1
            histogram = Histogram()
            resetDeliveryCounts()
            lastDeliveryAt = 0
            broadcastMode = broadcast
            broadcastSentAt = []
            broadcastExpected = []
            broadcastReceived = []
            broadcastLast = []
            serverBefore = options.serverPID.flatMap { ProcessStats.sample(pid: $0) }
            othersBefore = options.samplePIDs.map { ProcessStats.sample(pid: $0.pid) }
            clientBefore = ProcessStats.sampleSelf()
            startedAt = now
            publishEnd = 0
        }, poll: { [unowned self] in
            let t = now
            if t - startedAt < duration {
                var budget = rate > 0 ? Int(rate * Double(t - startedAt) / 1e9) + 1 - published : 100_000
                if windowed && rate == 0 {
                    let perMessage = broadcast ? max(openStreams, 1) : max(openStreams / max(options.peers, 1), 1)
                    let room = options.window - (expected - delivered)
                    // Always let one message through when nothing is in flight (a broadcast
                    // to more streams than the window).
                    budget = min(budget, max(room / perMessage, expected == delivered ? 1 : 0))
                }
                while budget > 0 {
                    guard let (publisherIndex, publisher) = nextReadyPublisher() else { break }
                    message.removeAll(keepingCapacity: true)
                    Stamp.append(Stamp(sentAt: now, step: step, seq: published), paddedTo: options.messageBytes, to: &message)
                    if broadcast {
                        publisher.publish(pair: options.broadcastPair ? nil : 0, message: message)
                        expected += openStreams
                        broadcastSentAt.append(now)
                        broadcastExpected.append(openStreams)
                        broadcastReceived.append(0)
                        broadcastLast.append(0)
                    } else {
                        // A pair always goes through the same connection, as a backend would
                        // keep a pair's messages in order: pair ≡ publisher index (mod count).
                        let peers = max(options.peers, 1)
                        var pair = Int(random.next() % UInt64(peers))
                        if publishers.count > 1 && peers >= publishers.count {
                            pair = pair - pair % publishers.count + publisherIndex
                            if pair >= peers { pair -= publishers.count }
                        }
                        publisher.publish(pair: pair, message: message)
                        expected += pairStreams[pair]
                    }
                    published += 1
                    budget -= 1
                }
                for publisher in publishers { publisher.flush() }
                if let closed = publishers.first(where: { $0.isClosed }) {
                    fail("publisher closed: \(closed.lastError)")
                }
                return false
            }
            if publishEnd == 0 { publishEnd = t }
            if delivered < expected && t - publishEnd < UInt64(options.drain * 1e9) { return false }
            let serverAfter = options.serverPID.flatMap { ProcessStats.sample(pid: $0) }
            let othersAfter = options.samplePIDs.map { ProcessStats.sample(pid: $0.pid) }
            var usage = SideUsage(serverBefore: serverBefore, serverAfter: serverAfter,
                                  clientBefore: clientBefore, clientAfter: ProcessStats.sampleSelf())
            let seconds = Double(max(publishEnd, lastDeliveryAt) - startedAt) / 1e9
            var r = header(step: rate > 0 ? "\(Int(rate))" : "max")
            r.set("streams", openStreams)
            r.set("via", options.publishVia.rawValue)
            if options.publishVia != .ingest {
                r.set("publish_connections", publishers.count)
                r.set("pipeline", options.pipeline)
                if options.publishVia == .publishBatch { r.set("batch", options.batch) }
            }
            r.set("offered_per_s", rate > 0 ? Report.format(rate, digits: 0) : "max")
            r.set("published", published)
            r.set("published_per_s", Double(published) / (Double(publishEnd - startedAt) / 1e9), digits: 0)
            if !windowed { r.set("accepted_per_s", Double(published) / (Double(publishEnd - startedAt) / 1e9), digits: 0) }
            r.set("expected", expected)
            r.set("delivered", delivered)
            r.set("lost", expected - delivered)
            r.set("repeats", repeats)
            r.set("events_per_s", Double(delivered) / max(seconds, 1e-9), digits: 0)
            addLatency(&r, histogram)
            if broadcast {
                var last = Histogram()
                var incomplete = 0
                for i in broadcastSentAt.indices {
                    if broadcastReceived[i] >= broadcastExpected[i] && broadcastLast[i] > 0 {
                        last.record(broadcastLast[i] - broadcastSentAt[i])
                    } else {
                        incomplete += 1
                    }
                }
                r.set("last_p50_us", Double(last.value(at: 0.5)) / 1000, digits: 0)
                r.set("last_p99_us", Double(last.value(at: 0.99)) / 1000, digits: 0)
                r.set("last_max_us", Double(last.max) / 1000, digits: 0)
                r.set("incomplete_broadcasts", incomplete)
            }
            for (i, other) in options.samplePIDs.enumerated() {
                guard i < othersBefore.count, let b = othersBefore[i], let a = othersAfter[i] else { continue }
                let ns = a.cpuNanoseconds &- b.cpuNanoseconds
                let share = Double(ns) / Double(max(a.at - b.at, 1))
                usage.foreignCPU = max(0, usage.foreignCPU - share)
                r.set("\(other.name)_cpu_pct", share * 100, digits: 0)
                if delivered > 0 { r.set("\(other.name)_us_per_event", Double(ns) / 1000 / Double(delivered), digits: 2) }
                r.set("\(other.name)_rss_mb", Double(a.rssBytes) / 1048576, digits: 1)
            }
            addUsage(&r, usage, operations: delivered, unit: "event")
            r.set("dropped", droppedAfterOpen)
            r.set("publish_errors", publishers.reduce(0) { $0 + $1.errors })
            let entryErrors = publishers.reduce(0) { $0 + (($1 as? HTTPPublisher)?.entryErrors ?? 0) }
            if entryErrors > 0 { r.set("entry_errors", entryErrors) }
            if let e = publishers.first(where: { $0.errors > 0 })?.lastError { r.set("publish_error", String(e.prefix(60))) }
            record(r)
            if delivered == 0 { fail("step \(r["step"] ?? "?") delivered no event (\(lastFailure))") }
            return true
        })
    }

    /// Starts the counts of a delivery step from zero.
    private func resetDeliveryCounts() {
        delivered = 0
        repeats = 0
        expected = 0
        published = 0
    }

    /// Publishes the targeted messages due at `rate` since `startedAt`, each to a random pair
    /// and stamped for latency, then flushes; fails the run when a publisher closed.
    private func publishDue(rate: Double, since startedAt: UInt64, at t: UInt64, into message: inout [UInt8]) {
        var budget = Int(rate * Double(t - startedAt) / 1e9) + 1 - published
        while budget > 0 {
            guard let (_, publisher) = nextReadyPublisher() else { break }
            message.removeAll(keepingCapacity: true)
            Stamp.append(Stamp(sentAt: now, step: step, seq: published), paddedTo: options.messageBytes, to: &message)
            let pair = Int(random.next() % UInt64(max(options.peers, 1)))
            publisher.publish(pair: pair, message: message)
            expected += pairStreams[pair]
            published += 1
            budget -= 1
        }
        for publisher in publishers { publisher.flush() }
        if let closed = publishers.first(where: { $0.isClosed }) { fail("publisher closed: \(closed.lastError)") }
    }

    private func nextReadyPublisher() -> (Int, any Publisher)? {
        for _ in 0..<publishers.count {
            let i = nextPublisher % publishers.count
            nextPublisher += 1
            if publishers[i].canPublish { return (i, publishers[i]) }
        }
        return nil
    }

    // MARK: Handshakes

    /// Opens `--count` streams, `--concurrency` at a time, closing each once its head has
    /// arrived: new TLS sessions, or resumed ones (each offers the latest ticket).
    private func churn(resumed: Bool) -> Phase {
        var startedAt: UInt64 = 0
        var started = 0
        var serverBefore: ProcessSample?
        var clientBefore = ProcessStats.sampleSelf()
        return Phase(start: { [unowned self] in
            step += 1
            histogram = Histogram()
            churning = true
            churnResumed = resumed
            churnDone = 0
            churnFailed = 0
            churnReused = 0
            latestSession = nil
            serverBefore = options.serverPID.flatMap { ProcessStats.sample(pid: $0) }
            clientBefore = ProcessStats.sampleSelf()
            startedAt = now
        }, poll: { [unowned self] in
            let inFlight = started - churnDone - churnFailed
            // Resumption needs a first session: one connection alone until it has one.
            let primed = !resumed || latestSession != nil
            var room = primed ? options.concurrency - inFlight : (inFlight == 0 ? 1 : 0)
            while started < options.count && room > 0 {
                started += 1
                room -= 1
                startStream(closeWhenOpen: true, session: resumed ? latestSession : nil)
            }
            let elapsed = Double(now - startedAt) / 1e9
            guard churnDone + churnFailed >= options.count || elapsed > Double(options.count) / 50 + 30 else { return false }
            churning = false
            let usage = SideUsage(serverBefore: serverBefore, serverAfter: options.serverPID.flatMap { ProcessStats.sample(pid: $0) },
                                  clientBefore: clientBefore, clientAfter: ProcessStats.sampleSelf())
            var r = header(step: resumed ? "resumed" : "fresh")
            r.set("opened", churnDone)
            r.set("failed", churnFailed)
            r.set("reused", churnReused)
            r.set("openings_per_s", Double(churnDone) / elapsed, digits: 0)
            addLatency(&r, histogram)
            addUsage(&r, usage, operations: churnDone, unit: "open")
            if churnFailed > 0 { r.set("last_failure", String(lastFailure.prefix(60))) }
            record(r)
            if churnDone == 0 { fail("no stream opened (\(lastFailure))") }
            if resumed && churnReused < churnDone / 2 { print("qri-bench: warning: only \(churnReused) of \(churnDone) handshakes resumed") }
            return true
        })
    }

    // MARK: Rolling restart

    /// Starts the reconnections that are due: each a new stream to `--reconnect-port` with
    /// the Last-Event-ID it had, keeping its pair and the newest stamp it saw.
    private func reconnectDue() {
        let nowMs = now / 1_000_000
        if reconnectScannedMs == 0 { reconnectScannedMs = nowMs }
        while reconnectScannedMs <= nowMs {
            if let due = reconnectQueue.removeValue(forKey: reconnectScannedMs) {
                for r in due { reopen(r) }
            }
            reconnectScannedMs += 1
        }
    }

    private func reopen(_ r: Reconnect) {
        let id = nextStreamID
        nextStreamID += 1
        do {
            let fd = try reconnectConnector.connect()
            let stream = try SSEStream(bench: self, fd: fd, id: id, pair: r.pair, path: path(forPair: r.pair),
                                       closeWhenOpen: false, session: nil, lastEventID: r.lastEventID, isReconnect: true)
            stream.lastStep = r.lastStep
            stream.lastSeq = r.lastSeq
            streams[id] = stream
            liveStreams += 1
        } catch {
            streamFailures += 1
            reconnectFailures += 1
            lastFailure = "\(error)"
            let due = (now + UInt64(r.retry ?? 2000) * 1_000_000) / 1_000_000
            reconnectQueue[due, default: []].append(r)
        }
    }

    /// The rolling restart: targeted messages at the first of `--rates` throughout; after
    /// `--baseline` s, SIGTERM to `--kill-pid`; streams closed by it come back on
    /// `--reconnect-port`. Publishing goes on until every stream is open again and
    /// `--duration` s more, then what was published is checked against what arrived.
    private func restartRun() -> Phase {
        var startedAt: UInt64 = 0
        var killedAt: UInt64 = 0
        var allBackAt: UInt64 = 0
        var publishEnd: UInt64 = 0
        var message: [UInt8] = []
        let rate = options.rates.first(where: { $0 > 0 }) ?? 1000
        return Phase(start: { [unowned self] in
            step += 1
            histogram = Histogram()
            resetDeliveryCounts()
            reconnecting = true
            startedAt = now
        }, poll: { [unowned self] in
            let t = now
            if killedAt == 0 && t - startedAt >= UInt64(options.baseline * 1e9) {
                killedAt = t
                if let pid = options.killPID, kill(pid, SIGTERM) != 0 { fail("kill \(pid): \(String(cString: strerror(errno)))") }
            }
            reconnectDue()
            if killedAt > 0 && allBackAt == 0 && !closeTimes.isEmpty && openStreams >= options.conns && reconnectQueue.isEmpty {
                allBackAt = t
            }
            let over = allBackAt > 0 && t - allBackAt >= UInt64(options.duration * 1e9)
            let timedOut = killedAt > 0 && t - killedAt > UInt64(options.waveTimeout * 1e9)
            if !over && !timedOut {
                publishDue(rate: rate, since: startedAt, at: t, into: &message)
                return false
            }
            if publishEnd == 0 { publishEnd = t }
            if delivered < expected && t - publishEnd < UInt64(options.drain * 1e9) { return false }
            reconnecting = false
            reportRestart(killedAt: killedAt, allBackAt: allBackAt)
            return true
        })
    }

    private func reportRestart(killedAt: UInt64, allBackAt: UInt64) {
        func perSecond(_ times: [UInt64]) -> [Int] {
            guard let first = times.min(), let last = times.max() else { return [] }
            var counts = [Int](repeating: 0, count: Int((last - first) / 1_000_000_000) + 1)
            for t in times { counts[Int((t - first) / 1_000_000_000)] += 1 }
            return counts
        }
        var r = header(step: "restart")
        r.set("streams", options.conns)
        r.set("open_at_end", openStreams)
        r.set("closed_by_server", closeTimes.count)
        r.set("reconnected", reopenTimes.count)
        r.set("reconnect_failures", reconnectFailures)
        if let first = closeTimes.min() {
            r.set("first_close_s", Double(first &- killedAt) / 1e9, digits: 2)
            if let last = closeTimes.max() { r.set("close_span_s", Double(last - first) / 1e9, digits: 2) }
            if allBackAt > 0 { r.set("all_back_s", Double(allBackAt - killedAt) / 1e9, digits: 2) }
        }
        let rates = perSecond(reopenTimes)
        if !rates.isEmpty {
            // Whole seconds from the first reconnection on; the last, partial second is left out
            // of the mean and the maximum when there is more than one.
            let whole = rates.count > 1 ? Array(rates.dropLast()) : rates
            let mean = Double(whole.reduce(0, +)) / Double(whole.count)
            r.set("reconnect_seconds", rates.count)
            r.set("reconnects_per_s_mean", mean, digits: 0)
            r.set("reconnects_per_s_max", whole.max() ?? 0)
            r.set("max_over_mean", Double(whole.max() ?? 0) / max(mean, 1e-9), digits: 2)
            r.set("reconnects_per_s", rates.map(String.init).joined(separator: ","))
        }
        r.set("closes_per_s", perSecond(closeTimes).map(String.init).joined(separator: ","))
        r.set("published", published)
        r.set("expected", expected)
        r.set("delivered", delivered)
        r.set("lost", expected - delivered)
        r.set("repeats", repeats)
        addLatency(&r, histogram)
        if let last = lastFailure.isEmpty ? nil : lastFailure { r.set("last_failure", String(last.prefix(60))) }
        record(r)
        if closeTimes.isEmpty { fail("no stream was closed by the restarted node") }
    }

    // MARK: Storm

    /// One wave as the helper reported it (`WAVE key=value …` lines on its stdout).
    struct WaveReport {
        var mode = ""
        var start: [String: String] = [:]
        var end: [String: String] = [:]
        var holderCPUStart: UInt64 = 0
        var holderCPUEnd: UInt64 = 0
    }

    private var helperPID: pid_t = 0
    private var helperPipe: HelperPipe?
    private var helperDone = false
    private var waves: [WaveReport] = []

    /// A line from the helper process.
    func helperLine(_ line: String) {
        guard line.hasPrefix("WAVE ") else {
            if !line.isEmpty { print("qri-bench: helper: \(line)") }
            return
        }
        var fields: [String: String] = [:]
        for item in line.split(separator: " ").dropFirst() {
            guard let eq = item.firstIndex(of: "=") else { continue }
            fields[String(item[..<eq])] = String(item[item.index(after: eq)...])
        }
        let cpu = ProcessStats.sampleSelf().cpuNanoseconds
        if fields["event"] == "start" {
            var w = WaveReport()
            w.mode = fields["mode"] ?? "?"
            w.start = fields
            w.holderCPUStart = cpu
            waves.append(w)
        } else if fields["event"] == "end", !waves.isEmpty {
            waves[waves.count - 1].end = fields
            waves[waves.count - 1].holderCPUEnd = cpu
        }
    }

    func helperEnded() {
        helperDone = true
        if helperPID > 0 {
            var status: Int32 = 0
            waitpid(helperPID, &status, 0)
            if status != 0 { print("qri-bench: helper exited with status \(status)") }
            helperPID = 0
        }
    }

    /// Starts `qri-bench storm-wave` (this executable) with its stdout on a pipe this loop reads.
    private func spawnHelper() -> String? {
        var args = ["qri-bench", "storm-wave", "--label", options.label, "--host", options.host,
                    "--port", "\(options.port)", "--server-name", options.serverName,
                    "--stream-path", options.streamPath, "--source-addresses", "\(options.sourceAddresses)",
                    "--storm", "\(options.stormCount)", "--modes", options.modes.joined(separator: ","),
                    "--settle", "\(options.settle)", "--wave-timeout", "\(options.waveTimeout)",
                    "--pair-offset", "\(options.peers + options.pairOffset)", "--max-seconds", "\(options.maxSeconds)"]
        if let pid = options.serverPID { args += ["--server-pid", "\(pid)"] }
        if let ca = options.caFile { args += ["--ca-file", ca] }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return "pipe: \(String(cString: strerror(errno)))" }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, "/proc/self/exe", &actions, nil, argv, environ)
        close(fds[1])
        guard r == 0 else {
            close(fds[0])
            return "posix_spawn: \(String(cString: strerror(r)))"
        }
        helperPID = pid
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        let reader = HelperPipe(bench: self, fd: fds[0])
        do { try loop.register(fd: fds[0], interest: .readable, handler: reader) } catch { return "\(error)" }
        helperPipe = reader
        return nil
    }

    /// The storm, holder side: targeted messages at the first of `--rates` to the open
    /// streams throughout; after `--baseline` s the helper process opens its waves of new
    /// streams; when it has finished, one RESULT line for the baseline and one per wave.
    private func stormRun() -> Phase {
        var startedAt: UInt64 = 0
        var baselineEnd: UInt64 = 0
        var publishEnd: UInt64 = 0
        var serverStart: ProcessSample?
        var serverBaselineEnd: ProcessSample?
        var clientStart = ProcessStats.sampleSelf()
        var message: [UInt8] = []
        var lastPoll: UInt64 = 0
        let rate = options.rates.first(where: { $0 > 0 }) ?? 1000
        return Phase(start: { [unowned self] in
            step += 1
            stormStalls = []
            stormSamples = []
            stormSamples.reserveCapacity(Int(rate * 120))
            stormRecording = true
            resetDeliveryCounts()
            serverStart = options.serverPID.flatMap { ProcessStats.sample(pid: $0) }
            clientStart = ProcessStats.sampleSelf()
            startedAt = now
        }, poll: { [unowned self] in
            let t = now
            // The holder's own stalls (its 1-ms timer late): a latency the server did not cause.
            if lastPoll > 0 && t - lastPoll > 2_000_000 { stormStalls.append((t, t - lastPoll)) }
            lastPoll = t
            if baselineEnd == 0 && t - startedAt >= UInt64(options.baseline * 1e9) {
                baselineEnd = t
                serverBaselineEnd = options.serverPID.flatMap { ProcessStats.sample(pid: $0) }
                if let why = spawnHelper() { fail("cannot start the storm helper: \(why)") }
            }
            if !helperDone {
                publishDue(rate: rate, since: startedAt, at: t, into: &message)
                return false
            }
            if publishEnd == 0 { publishEnd = t }
            if delivered < expected && t - publishEnd < UInt64(options.drain * 1e9) { return false }
            stormRecording = false
            reportStorm(startedAt: startedAt, baselineEnd: baselineEnd, serverStart: serverStart,
                        serverBaselineEnd: serverBaselineEnd, clientStart: clientStart)
            return true
        })
    }

    private func reportStorm(startedAt: UInt64, baselineEnd: UInt64, serverStart: ProcessSample?,
                             serverBaselineEnd: ProcessSample?, clientStart: ProcessSample) {
        func latency(from: UInt64, to: UInt64) -> (Histogram, Int) {
            var h = Histogram()
            var n = 0
            for s in stormSamples where s.sentAt >= from && s.sentAt < to {
                h.record(s.latency)
                n += 1
            }
            return (h, n)
        }
        // Server CPU of publishing alone, to take out of the waves' figures.
        var baselineRate = 0.0
        if let a = serverStart, let b = serverBaselineEnd, b.at > a.at {
            baselineRate = Double(b.cpuNanoseconds &- a.cpuNanoseconds) / Double(b.at - a.at)
        }
        var r = header(step: "baseline")
        r.set("streams", openStreams)
        r.set("offered_per_s", Report.format(options.rates.first(where: { $0 > 0 }) ?? 1000, digits: 0))
        let (h, n) = latency(from: startedAt, to: baselineEnd)
        r.set("events", n)
        addLatency(&r, h)
        r.set("server_cpu_pct", baselineRate * 100, digits: 1)
        if let a = serverStart, let b = serverBaselineEnd {
            let usage = SideUsage(serverBefore: a, serverAfter: b, clientBefore: clientStart, clientAfter: clientStart)
            r.set("rss_mb", Double(usage.serverRSS) / 1048576, digits: 1)
        }
        record(r)
        for wave in waves {
            var r = header(step: wave.mode)
            let start = UInt64(wave.start["at"] ?? "") ?? 0
            let end = UInt64(wave.end["at"] ?? "") ?? now
            let lastOpen = UInt64(wave.end["last_open_at"] ?? "") ?? 0
            let opened = Int(wave.end["opened"] ?? "") ?? 0
            let count = Int(wave.start["count"] ?? "") ?? 0
            r.set("streams", openStreams)
            r.set("new", count)
            r.set("opened", opened)
            r.set("failed", wave.end["failed"] ?? "?")
            r.set("timed_out", wave.end["timed_out"] ?? "?")
            r.set("reused", wave.end["reused"] ?? "?")
            if lastOpen > start { r.set(opened == count ? "all_open_s" : "opened_by_s", Double(lastOpen - start) / 1e9, digits: 2) }
            let (h, n) = latency(from: start, to: end)
            r.set("events", n)
            addLatency(&r, h)
            let wall = Double(max(end &- start, 1))
            if let c0 = UInt64(wave.start["cpu"] ?? ""), let c1 = UInt64(wave.end["cpu"] ?? "") {
                let cpu = Double(c1 &- c0)
                r.set("server_cpu_pct", cpu / wall * 100, digits: 0)
                if opened > 0 {
                    r.set("server_us_per_open", cpu / 1000 / Double(opened), digits: 1)
                    r.set("server_us_per_open_net", max(0, cpu - baselineRate * wall) / 1000 / Double(opened), digits: 1)
                }
            }
            var helperCPU = 0.0
            if let c0 = UInt64(wave.start["self"] ?? ""), let c1 = UInt64(wave.end["self"] ?? "") {
                helperCPU = Double(c1 &- c0) / wall
                r.set("helper_cpu_pct", helperCPU * 100, digits: 0)
            }
            let stall = stormStalls.filter { $0.at >= start && $0.at - $0.gap <= end }.map(\.gap).max() ?? 0
            r.set("holder_max_stall_us", Double(stall) / 1000, digits: 0)
            let holderCPU = Double(wave.holderCPUEnd &- wave.holderCPUStart) / wall
            r.set("holder_cpu_pct", holderCPU * 100, digits: 0)
            if let b0 = UInt64(wave.start["busy"] ?? ""), let b1 = UInt64(wave.end["busy"] ?? ""),
               let c0 = UInt64(wave.start["cpu"] ?? ""), let c1 = UInt64(wave.end["cpu"] ?? "") {
                let machine = Double(b1 &- b0) / wall
                r.set("foreign_cpu_pct", max(0, machine - Double(c1 &- c0) / wall - helperCPU - holderCPU) * 100, digits: 0)
            }
            if let last = wave.end["last_failure"] { r.set("last_failure", last) }
            record(r)
        }
        var all = header(step: "whole")
        all.set("streams", openStreams)
        all.set("published", published)
        all.set("expected", expected)
        all.set("delivered", delivered)
        all.set("lost", expected - delivered)
        all.set("repeats", repeats)
        all.set("dropped", droppedAfterOpen)
        record(all)
        if waves.isEmpty { fail("the storm helper reported no wave") }
    }

    /// The storm, helper side: opens `--storm` streams at once (fresh, or resumed with the
    /// sessions of the fresh wave), reports on stdout when it started and when the last one
    /// opened, failed or timed out.
    private func wave(resumed: Bool) -> Phase {
        var startedAt: UInt64 = 0
        let count = options.stormCount
        return Phase(start: { [unowned self] in
            if waveSessions.count != count { waveSessions = Array(repeating: nil, count: count) }
            waveActive = true
            waveOpened = 0
            waveFailed = 0
            waveReused = 0
            waveLastOpenAt = 0
            let server = options.serverPID.flatMap { ProcessStats.sample(pid: $0) }
            startedAt = now
            emitWave("mode=\(resumed ? "resumed" : "fresh") event=start count=\(count) at=\(startedAt) cpu=\(server?.cpuNanoseconds ?? 0) busy=\(ProcessStats.machineBusyNanoseconds()) self=\(ProcessStats.sampleSelf().cpuNanoseconds)")
            for _ in 0..<count {
                startStream(session: resumed ? waveSessions[nextStreamID % count] : nil)
            }
        }, poll: { [unowned self] in
            let t = now
            guard waveOpened + waveFailed >= count || t - startedAt > UInt64(options.waveTimeout * 1e9) else { return false }
            waveActive = false
            let server = options.serverPID.flatMap { ProcessStats.sample(pid: $0) }
            var line = "mode=\(resumed ? "resumed" : "fresh") event=end at=\(t) cpu=\(server?.cpuNanoseconds ?? 0) busy=\(ProcessStats.machineBusyNanoseconds()) self=\(ProcessStats.sampleSelf().cpuNanoseconds)"
            line += " opened=\(waveOpened) failed=\(waveFailed) timed_out=\(count - waveOpened - waveFailed) reused=\(waveReused) last_open_at=\(waveLastOpenAt)"
            if waveFailed > 0 || waveOpened < count {
                line += " last_failure=" + String(lastFailure.prefix(60)).map { $0 == " " ? "_" : $0 }.reduce(into: "") { $0.append($1) }
            }
            emitWave(line)
            return true
        })
    }

    private func emitWave(_ line: String) {
        print("WAVE " + line)
        fflush(nil)
    }

    // MARK: Results

    private func header(step: String) -> ResultLine {
        var r = ResultLine()
        r.set("label", options.label)
        r.set("scenario", options.resultScenario)
        r.set("step", step)
        if let rep = options.rep { r.set("rep", rep) }
        return r
    }

    private func addLatency(_ r: inout ResultLine, _ h: Histogram) {
        r.set("p50_us", Double(h.value(at: 0.5)) / 1000, digits: 0)
        r.set("p90_us", Double(h.value(at: 0.9)) / 1000, digits: 0)
        r.set("p99_us", Double(h.value(at: 0.99)) / 1000, digits: 0)
        r.set("p999_us", Double(h.value(at: 0.999)) / 1000, digits: 0)
        r.set("max_us", Double(h.max) / 1000, digits: 0)
    }

    private func addUsage(_ r: inout ResultLine, _ usage: SideUsage, operations: Int, unit: String) {
        r.set("server_cpu_pct", usage.serverCPU * 100, digits: 0)
        r.set("client_cpu_pct", usage.clientCPU * 100, digits: 0)
        if operations > 0 {
            r.set("server_us_per_\(unit)", Double(usage.serverCPUNanoseconds) / 1000 / Double(operations), digits: 2)
        }
        r.set("rss_mb", Double(usage.serverRSS) / 1048576, digits: 1)
        r.set("foreign_cpu_pct", usage.foreignCPU * 100, digits: 0)
        r.set("saturated", usage.saturated(serverCores: options.serverCores))
    }

    private func record(_ r: ResultLine) {
        results.append(r)
        Report.emit(r)
    }
}

/// xorshift64*: the bench picks pairs without a system call per pick.
struct XorShift {
    private var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 1 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}

/// The read end of the storm helper's stdout: lines to `Bench.helperLine`, end of file to
/// `Bench.helperEnded`.
final class HelperPipe: ReadinessHandler {
    unowned let bench: Bench
    private let fd: Int32
    private var carry: [UInt8] = []
    private var closed = false

    init(bench: Bench, fd: Int32) {
        self.bench = bench
        self.fd = fd
    }

    func loopDidReport(readable: Bool, writable: Bool) {
        guard !closed else { return }
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                carry += chunk[..<n]
                while let nl = carry.firstIndex(of: 0x0A) {
                    let line = String(decoding: carry[..<nl], as: UTF8.self)
                    carry.removeSubrange(...nl)
                    bench.helperLine(line)
                }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            closed = true
            bench.loop.unregister(fd: fd)
            close(fd)
            bench.helperEnded()
            return
        }
    }
}
