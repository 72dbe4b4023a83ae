import DequeModule
import QriHTTP
import QriLoop
import QriRedis
import QriTLS

/// What publishing one message through Redis gave.
struct ClusterPublished: Sendable {
    let id: UInt64
    /// Nodes that held a stream of the pair when Redis published it.
    let nodes: Int
}

/// One event loop's part of the cluster: a command connection to each Redis server, the
/// publishes of this loop's ingest and admin connections (pipelined, queued while a server
/// is away), and the reading of history for this loop's streams when they open or must
/// catch up after an outage.
///
/// Confined to its loop; other threads reach it only through `worker.loop.execute`.
final class ClusterLoop: @unchecked Sendable {
    /// A script, by name for Redis (its SHA-1) and in full for NOSCRIPT.
    struct Script {
        let source: [UInt8]
        let sha: [UInt8]
        init(_ text: String) {
            source = Array(text.utf8)
            sha = Array(Digest.sha1Hex(source).utf8)
        }
    }

    static let publishScript = Script(ClusterKeys.publishScript)
    static let openScript = Script(ClusterKeys.openScript)
    static let touchScript = Script(ClusterKeys.touchScript)

    /// A publish not answered yet. A class: its answer may come from the reply, or from the
    /// deadline, whichever is first.
    private final class Publish {
        let arguments: [[UInt8]]
        let deadline: UInt64?
        let sent = Clock.monotonicNanoseconds()
        var done: ((Result<ClusterPublished, RedisError>) -> Void)?
        init(arguments: [[UInt8]], deadline: UInt64?, done: @escaping (Result<ClusterPublished, RedisError>) -> Void) {
            self.arguments = arguments
            self.deadline = deadline
            self.done = done
        }
        func finish(_ result: Result<ClusterPublished, RedisError>) {
            let done = self.done
            self.done = nil
            done?(result)
        }
    }

    private unowned let node: ClusterNode
    let worker: LoopWorker
    private var connections: [RedisConnection] = []
    /// Per server, publishes waiting for it to come back, in order.
    private var waiting: [Deque<Publish>]
    /// Publishes with a deadline, oldest first (the deadline is the same length for all).
    private var deadlines = Deque<Publish>()
    /// Per server, streams (by serial) whose history read waits for it.
    private var parked: [[UInt64]]
    private let historyLength: [UInt8]
    private let ttlMilliseconds: [UInt8]
    private let metaTTLMilliseconds: [UInt8]

    init(node: ClusterNode, worker: LoopWorker) {
        self.node = node
        self.worker = worker
        waiting = Array(repeating: Deque(), count: node.servers.count)
        parked = Array(repeating: [], count: node.servers.count)
        let configuration = node.configuration
        historyLength = Array(String(configuration.history).utf8)
        let ttl = max(UInt64(configuration.historyTTL * 1000), 1000)
        ttlMilliseconds = Array(String(ttl).utf8)
        // The newest id that left a history is kept a day past the history itself.
        metaTTLMilliseconds = Array(String(ttl + 86_400_000).utf8)
    }

    func start() {
        for shard in node.servers.indices {
            let connection = node.connection(to: shard, on: worker.loop, subscriber: false,
                                             up: { [unowned self] in self.connectionUp($0) },
                                             down: { [unowned self] in self.connectionDown($0, $1) })
            connections.append(connection)
            connection.start()
        }
        worker.loop.every(nanoseconds: 50_000_000) { [unowned self] in self.expireDeadlines() }
        let touchPeriod = UInt64(max(node.configuration.historyTTL / 3, 1) * 1e9)
        worker.loop.every(nanoseconds: touchPeriod) { [unowned self] in self.touchHistories() }
    }

    /// Whether a sender should wait: a server is away or far behind.
    var isBacklogged: Bool {
        waiting.contains { !$0.isEmpty } || connections.contains { $0.inFlight > 20_000 }
    }

    // MARK: Publishing

    /// Publishes `messages`, each with one atomic call on its pair's server, pipelined.
    /// `done` gets every message's outcome, in order, once all are known. Without a
    /// `deadline` a message waits for its server however long it is away (ingest: nothing
    /// accepted is dropped); with one it fails at the deadline (`/publish` answers 503).
    func publish(_ messages: [IngestMessage], deadline: UInt64?,
                 done: @escaping ([Result<ClusterPublished, RedisError>]) -> Void) {
        var results = [Result<ClusterPublished, RedisError>?](repeating: nil, count: messages.count)
        var remaining = messages.count
        if remaining == 0 { return done([]) }
        for (i, message) in messages.enumerated() {
            let name = ClusterKeys.name(peer: message.peer, checksum: message.checksum)
            let arguments: [[UInt8]] = [
                Array("EVALSHA".utf8), Self.publishScript.sha, Array("5".utf8),
                ClusterKeys.history(name), ClusterKeys.meta(name), ClusterKeys.channel(name), ClusterKeys.last, ClusterKeys.first,
                Array(message.message), historyLength, ttlMilliseconds, metaTTLMilliseconds,
            ]
            let publish = Publish(arguments: arguments, deadline: deadline) { result in
                results[i] = result
                remaining -= 1
                if remaining == 0 { done(results.map { $0! }) }
            }
            if deadline != nil { deadlines.append(publish) }
            let shard = node.shard(ofName: name)
            if connections[shard].isUp && waiting[shard].isEmpty {
                send(publish, shard: shard)
            } else {
                waiting[shard].append(publish)
            }
        }
    }

    private func send(_ publish: Publish, shard: Int) {
        connections[shard].send(publish.arguments) { [unowned self] result in
            guard publish.done != nil else { return }  // answered at its deadline already
            switch result {
            case .success(let reply):
                if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
                    return self.sendInFull(publish, shard: shard)
                }
                self.node.metrics.publishSeconds.record(Double(Clock.monotonicNanoseconds() - publish.sent) / 1e9)
                guard let items = reply.array, items.count == 2, let id = items[0].bytes.flatMap({ SSEEncoder.parseID($0) }),
                      let nodes = items[1].integer else {
                    self.node.metrics.commandsFailed.increment()
                    self.node.logger.error("unexpected answer to a publish", metadata: ["reply": "\(reply)"])
                    return publish.finish(.failure(.protocolError("unexpected answer to a publish")))
                }
                self.node.metrics.commandsOK.increment()
                publish.finish(.success(ClusterPublished(id: id, nodes: Int(nodes))))
            case .failure(let error):
                self.node.metrics.commandsFailed.increment()
                if publish.deadline == nil {
                    // Sent but unanswered: it may or may not have been applied. Sent again
                    // once the server is back, so that nothing accepted is lost (a message
                    // may then arrive twice, with two ids).
                    self.waiting[shard].append(publish)
                } else {
                    publish.finish(.failure(error))
                }
            }
        }
    }

    /// The script was not known to the server (flushed, or a new server): EVAL in full.
    private func sendInFull(_ publish: Publish, shard: Int) {
        var arguments = publish.arguments
        arguments[0] = Array("EVAL".utf8)
        arguments[1] = Self.publishScript.source
        let retry = Publish(arguments: arguments, deadline: publish.deadline) { publish.finish($0) }
        send(retry, shard: shard)
    }

    private func expireDeadlines() {
        let now = Clock.monotonicNanoseconds()
        while let first = deadlines.first, first.done == nil || (first.deadline ?? .max) <= now {
            deadlines.removeFirst()
            first.finish(.failure(.unavailable("no answer from Redis within \(node.configuration.redisTimeout) s")))
        }
        for shard in waiting.indices where !waiting[shard].isEmpty && !connections[shard].isUp {
            // Answered at their deadline already: no need to keep them for the server.
            waiting[shard].removeAll { $0.done == nil }
        }
    }

    // MARK: Streams

    /// Subscribes (through loop 0) to the pair of the stream `serial`, then reads the pair's
    /// position and history for it.
    func open(stream serial: UInt64, pair: PairKey) {
        let subscriber = node.subscriber!
        let loop = worker.loop
        node.loops[0].worker.loop.execute { [unowned self] in
            subscriber.acquire(pair) {
                loop.execute { [unowned self] in self.readPosition(stream: serial) }
            }
        }
    }

    func release(_ pair: PairKey) {
        let subscriber = node.subscriber!
        node.loops[0].worker.loop.execute { subscriber.release(pair) }
    }

    /// Reads the position and history of the stream's pair, and hands them to the stream;
    /// while the pair's server is away, the stream waits for it.
    private func readPosition(stream serial: UInt64) {
        guard let stream = worker.stream(serial: serial), stream.needsPosition else { return }
        let shard = node.shard(of: stream.pair)
        guard connections[shard].isUp else {
            parked[shard].append(serial)
            return
        }
        let name = ClusterKeys.name(of: stream.pair)
        let arguments: [[UInt8]] = [
            Array("EVALSHA".utf8), Self.openScript.sha, Array("4".utf8),
            ClusterKeys.history(name), ClusterKeys.meta(name), ClusterKeys.last, ClusterKeys.first,
            ttlMilliseconds, metaTTLMilliseconds,
        ]
        connections[shard].send(arguments) { [unowned self] result in
            guard let stream = self.worker.stream(serial: serial), stream.needsPosition else { return }
            switch result {
            case .success(.error(let message)) where message.hasPrefix("NOSCRIPT"):
                var full = arguments
                full[0] = Array("EVAL".utf8)
                full[1] = Self.openScript.source
                self.connections[shard].send(full) { [unowned self] result in self.positionRead(serial, shard, result) }
            default:
                self.positionRead(serial, shard, result)
            }
        }
    }

    private func positionRead(_ serial: UInt64, _ shard: Int, _ result: Result<RESPValue, RedisError>) {
        guard let stream = worker.stream(serial: serial), stream.needsPosition else { return }
        if case .success(let reply) = result, let position = ClusterPosition(reply) {
            node.metrics.commandsOK.increment()
            stream.positionRead(position)
        } else {
            node.metrics.commandsFailed.increment()
            parked[shard].append(serial)
        }
    }

    /// After the server's subscriptions are back: every stream of its pairs on this loop
    /// reads what it may have missed. Any thread.
    func catchUp(shard: Int) {
        worker.loop.execute { [unowned self] in
            for stream in self.worker.streams() where stream.isClusterStreaming && self.node.shard(of: stream.pair) == shard {
                stream.beginCatchUp()
                self.readPosition(stream: stream.serial)
            }
            self.retryParked(shard)
        }
    }

    private func retryParked(_ shard: Int) {
        let serials = parked[shard]
        parked[shard] = []
        for serial in serials { readPosition(stream: serial) }
    }

    /// Keeps the histories of pairs with streams on this loop from expiring.
    private func touchHistories() {
        var names: [[[UInt8]]] = Array(repeating: [], count: connections.count)
        var seen = Set<PairKey>()
        for stream in worker.streams() where stream.isClusterStreaming && seen.insert(stream.pair).inserted {
            let name = ClusterKeys.name(of: stream.pair)
            names[node.shard(of: stream.pair)] += [ClusterKeys.history(name), ClusterKeys.meta(name)]
        }
        for shard in names.indices where connections[shard].isUp {
            var start = 0
            while start < names[shard].count {
                let keys = Array(names[shard][start..<min(start + 1000, names[shard].count)])
                start += keys.count
                let arguments = [Array("EVAL".utf8), Self.touchScript.source, Array(String(keys.count).utf8)] + keys
                    + [ttlMilliseconds, metaTTLMilliseconds]
                connections[shard].send(arguments) { _ in }
            }
        }
    }

    // MARK: Connection state

    private func connectionUp(_ shard: Int) {
        node.commandConnection(shard, up: true)
        for script in [Self.publishScript, Self.openScript] {
            connections[shard].send([Array("SCRIPT".utf8), Array("LOAD".utf8), script.source]) { _ in }
        }
        let queued = waiting[shard]
        waiting[shard] = []
        for publish in queued where publish.done != nil { send(publish, shard: shard) }
        retryParked(shard)
    }

    private func connectionDown(_ shard: Int, _ why: String) {
        node.commandConnection(shard, up: false)
        if worker.index == 0 {
            worker.gateway.logger.warning("Redis connection lost", metadata: ["server": "\(node.servers[shard])", "error": "\(why)"])
        }
    }

    /// A command for the first server (the stored backdoor messages live there).
    func sendToFirstServer(_ arguments: [[UInt8]], reply: @escaping RedisConnection.Reply) {
        connections[0].send(arguments, reply: reply)
    }
}
