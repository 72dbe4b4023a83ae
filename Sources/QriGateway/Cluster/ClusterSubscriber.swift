import QriHTTP
import QriLoop
import QriRedis

/// The node's subscriptions, on loop 0: one subscriber connection per Redis server, the
/// channel of every pair this node holds a stream of (counted over all loops), SUBSCRIBE
/// and UNSUBSCRIBE batched once per pass, and the messages that arrive, handed to the loops
/// holding the pair's streams through the registry.
///
/// A stream reads its pair's history only once the channel is confirmed subscribed, so a
/// message published in between arrives by both ways and is sent once (streams drop ids
/// they have passed). Confined to loop 0.
final class ClusterSubscriber: @unchecked Sendable {
    private struct Channel {
        var streams = 0
        /// SUBSCRIBE/UNSUBSCRIBE sent and not confirmed yet.
        var unconfirmed = 0
        var subscribed = false
        var waiters: [@Sendable () -> Void] = []
    }

    private unowned let node: ClusterNode
    private let worker: LoopWorker
    private var connections: [RedisConnection] = []
    private var channels: [PairKey: Channel] = [:]
    /// Channel names waiting for this pass's SUBSCRIBE / UNSUBSCRIBE, per server.
    private var toSubscribe: [[[UInt8]]]
    private var toUnsubscribe: [[[UInt8]]]
    /// Per server after a (re)connect: confirmations still awaited before it counts as ready.
    private var resubscribing: [Int]
    private var everUp: [Bool]
    /// Messages of the current read, handed to the registry together (one lock, one hand-off
    /// per loop) when the read has been parsed.
    private var arrived: [(pair: PairKey, event: EncodedEvent)] = []

    init(node: ClusterNode, worker: LoopWorker) {
        self.node = node
        self.worker = worker
        toSubscribe = Array(repeating: [], count: node.servers.count)
        toUnsubscribe = Array(repeating: [], count: node.servers.count)
        resubscribing = Array(repeating: 0, count: node.servers.count)
        everUp = Array(repeating: false, count: node.servers.count)
    }

    func start() {
        for shard in node.servers.indices {
            let connection = node.connection(to: shard, on: worker.loop, subscriber: true,
                                             up: { [unowned self] in self.connectionUp($0) },
                                             down: { [unowned self] in self.connectionDown($0, $1) })
            connection.onPush = { [unowned self] push in self.received(push, shard: shard) }
            connection.onReadEnd = { [unowned self] in self.deliverArrived() }
            connections.append(connection)
            connection.start()
        }
        worker.loop.beforeSleep { [unowned self] in self.sendPending() }
    }

    // MARK: Streams come and go (any loop, through loop 0)

    /// Counts a stream of `pair` in; `then` runs (on loop 0) once the channel is subscribed.
    func acquire(_ pair: PairKey, then: @escaping @Sendable () -> Void) {
        var channel = channels[pair] ?? Channel()
        channel.streams += 1
        if channel.streams == 1 && !channel.subscribed {
            queue(pair, subscribe: true, &channel)
        }
        if channel.subscribed && channel.unconfirmed == 0 {
            channels[pair] = channel
            then()
        } else {
            channel.waiters.append(then)
            channels[pair] = channel
        }
        node.metrics.subscriptions.record(channels.count)
    }

    func release(_ pair: PairKey) {
        guard var channel = channels[pair] else { return }
        channel.streams -= 1
        if channel.streams == 0 && (channel.subscribed || channel.unconfirmed > 0) {
            queue(pair, subscribe: false, &channel)
        }
        channels[pair] = channel
        if channel.streams == 0 && channel.unconfirmed == 0 && !channel.subscribed { channels[pair] = nil }
        node.metrics.subscriptions.record(channels.count)
    }

    private func queue(_ pair: PairKey, subscribe: Bool, _ channel: inout Channel) {
        let shard = node.shard(of: pair)
        guard connections[shard].isUp else { return }  // the reconnect subscribes what is held
        let name = ClusterKeys.channel(ClusterKeys.name(of: pair))
        if subscribe { toSubscribe[shard].append(name) } else { toUnsubscribe[shard].append(name) }
        channel.unconfirmed += 1
        channel.subscribed = subscribe
    }

    /// One SUBSCRIBE and one UNSUBSCRIBE per server per pass, in bounded batches.
    private func sendPending() {
        for shard in connections.indices {
            for (names, verb) in [(toUnsubscribe[shard], "UNSUBSCRIBE"), (toSubscribe[shard], "SUBSCRIBE")] where !names.isEmpty {
                var start = 0
                while start < names.count {
                    let batch = names[start..<min(start + 1000, names.count)]
                    connections[shard].sendExpectingPushes([Array(verb.utf8)] + batch)
                    start += batch.count
                }
            }
            toSubscribe[shard].removeAll(keepingCapacity: true)
            toUnsubscribe[shard].removeAll(keepingCapacity: true)
        }
    }

    // MARK: From Redis

    private func received(_ push: RESPValue, shard: Int) {
        guard let items = push.array, let kind = items.first?.text else { return }
        switch kind {
        case "message":
            guard items.count == 3, let channel = items[1].bytes, let payload = items[2].bytes else { return }
            if channel == ClusterKeys.control {
                node.backdoorChanged(payload)
                return
            }
            guard let pair = ClusterKeys.pair(ofChannel: channel), let entry = ClusterKeys.entry(payload) else { return }
            var body: [UInt8] = []
            SSEEncoder.appendBody(data: entry.message, to: &body)
            arrived.append((pair, EncodedEvent(id: entry.id, body: body)))
        case "subscribe", "unsubscribe":
            guard items.count == 3, let channel = items[1].bytes else { return }
            if channel == ClusterKeys.control {
                confirmedOne(shard)
                return
            }
            guard let pair = ClusterKeys.pair(ofChannel: channel) else { return }
            confirmed(pair)
            confirmedOne(shard)
        default:
            break
        }
    }

    private func deliverArrived() {
        guard !arrived.isEmpty else { return }
        worker.gateway.registry.deliverFromCluster(arrived)
        arrived.removeAll(keepingCapacity: true)
    }

    private func confirmed(_ pair: PairKey) {
        guard var channel = channels[pair] else { return }
        channel.unconfirmed = max(0, channel.unconfirmed - 1)
        if channel.unconfirmed == 0 {
            if channel.subscribed && channel.streams > 0 {
                let waiters = channel.waiters
                channel.waiters = []
                channels[pair] = channel
                for waiter in waiters { waiter() }
                return
            }
            if channel.streams == 0 {
                channels[pair] = nil
                return
            }
        }
        channels[pair] = channel
    }

    private func confirmedOne(_ shard: Int) {
        guard resubscribing[shard] > 0 else { return }
        resubscribing[shard] -= 1
        if resubscribing[shard] == 0 { ready(shard) }
    }

    // MARK: Outages

    private func connectionUp(_ shard: Int) {
        if everUp[shard] { node.metrics.reconnected(shard) }
        everUp[shard] = true
        node.metrics.server(shard, up: true)
        // Every pair this node holds streams of on that server, again, in batches.
        var names: [[UInt8]] = []
        for (pair, var channel) in channels where node.shard(of: pair) == shard {
            guard channel.streams > 0 else {
                channels[pair] = nil
                continue
            }
            names.append(ClusterKeys.channel(ClusterKeys.name(of: pair)))
            channel.unconfirmed = 1
            channel.subscribed = true
            channels[pair] = channel
        }
        if shard == 0 { names.append(ClusterKeys.control) }
        toSubscribe[shard] = names
        toUnsubscribe[shard] = []
        resubscribing[shard] = names.count
        if names.isEmpty { ready(shard) }
        node.metrics.subscriptions.record(channels.count)
    }

    /// Every subscription of the server is confirmed: streams of its pairs catch up on what
    /// they may have missed while it was away.
    private func ready(_ shard: Int) {
        node.setSubscribed(shard, true)
        node.logger.notice("Redis subscriptions ready", metadata: ["server": "\(node.servers[shard])"])
        for loop in node.loops { loop.catchUp(shard: shard) }
        if shard == 0 { node.reloadBackdoor() }
    }

    private func connectionDown(_ shard: Int, _ why: String) {
        node.setSubscribed(shard, false)
        node.metrics.server(shard, up: false)
        node.logger.warning("Redis subscriber connection lost", metadata: ["server": "\(node.servers[shard])", "error": "\(why)"])
        resubscribing[shard] = 0
        toSubscribe[shard] = []
        toUnsubscribe[shard] = []
        for (pair, var channel) in channels where node.shard(of: pair) == shard {
            channel.unconfirmed = 0
            channel.subscribed = false
            channels[pair] = channel
        }
    }
}
