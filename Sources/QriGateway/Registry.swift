import DequeModule
import QriHTTP
public import QriLoop
import Synchronization

/// Where the registry hands events for the streams of one loop. Called under the registry's
/// lock, so it must only queue work (never block, never call back into the registry).
public protocol EventSink: Sendable {
    /// Queues `event` for the loop's streams of `pair`.
    func deliver(_ event: EncodedEvent, to pair: PairKey)
    /// Queues `events` for every stream of the loop (backdoor broadcasts).
    func broadcast(_ events: [EncodedEvent])
}

/// How a new stream starts: what to replay, whether to announce a gap, and from which id on
/// live events are its own.
public struct StreamStart: Sendable {
    /// A fresh id for the stream's first `Tick`.
    public let tickID: UInt64
    /// Live events with larger ids go to the stream; the others are replayed or predate it.
    public let startID: UInt64
    /// History events newer than the requested Last-Event-ID, oldest first.
    public let replay: [EncodedEvent]
    /// Whether events newer than the requested id have left history (or may have).
    public let gap: Bool
    /// The stored backdoor messages, ascending by type, to send right after the first Tick.
    public let heralds: [EncodedEvent]
}

/// The one shared, thread-safe registry: which loops hold streams of each (peer, checksum),
/// each pair's history for `Last-Event-ID` resume, and the event id clock.
///
/// Every method takes one short lock. Streams themselves live on their loops; the registry
/// only counts them per loop and hands each event to the loops that hold its pair's streams,
/// under the same lock that issued its id, so every loop sees events in id order.
public final class Registry: Sendable {
    /// History bounds.
    public struct Limits: Sendable {
        public var eventsPerPair: Int
        public var ttlNanoseconds: UInt64
        public var memoryBytes: Int

        public init(eventsPerPair: Int, ttlNanoseconds: UInt64, memoryBytes: Int) {
            self.eventsPerPair = eventsPerPair
            self.ttlNanoseconds = ttlNanoseconds
            self.memoryBytes = memoryBytes
        }
    }

    /// What routing one message did.
    public struct Routed: Sendable {
        public let id: UInt64
        /// Streams of the pair open when the message was routed.
        public let streams: Int
    }

    private struct Pair {
        var streamsPerLoop: [Int32]
        var streams = 0
        var events = Deque<EncodedEvent>()
        var bytes = 0
        /// The largest id that left this pair's history.
        var evictedUpTo: UInt64 = 0
        /// Ids from here on are all known to this pair's history.
        let createdAfter: UInt64
        /// When the pair last became idle or got a message while idle (monotonic ns).
        var touched: UInt64
        var lruStamp: UInt64 = 0
        var awaitingExpiry = false
    }

    private struct State {
        var clock: EventIDClock
        var pairs: [PairKey: Pair] = [:]
        var historyBytes = 0
        /// The largest id dropped together with a whole pair: a pair created later cannot
        /// tell whether it had events before that.
        var droppedUpTo: UInt64 = 0
        var lru = Deque<(pair: PairKey, stamp: UInt64)>()
        var nextStamp: UInt64 = 0
        var expiry = Deque<(pair: PairKey, deadline: UInt64)>()
        var sinks: [any EventSink] = []
        /// Stored backdoor messages by three-digit type; the body is `TTT<message>` encoded.
        var heralds: [String: (message: [UInt8], body: [UInt8])] = [:]
    }

    public let limits: Limits
    private let state: Mutex<State>

    public init(limits: Limits, loopCount: Int, clock: EventIDClock = EventIDClock()) {
        self.limits = limits
        self.loopCount = loopCount
        state = Mutex(State(clock: clock))
    }

    /// Connects the loops; call once, before any stream opens. `sinks[i]` serves loop `i`.
    public func attach(_ sinks: [any EventSink]) {
        precondition(sinks.count == loopCount)
        state.withLock { $0.sinks = sinks }
    }

    /// How many loops the registry counts streams for.
    public let loopCount: Int

    /// The first id of this process.
    public var firstID: UInt64 { state.withLock { $0.clock.first } }

    /// Issues a fresh id, for events that are not routed (ticks, heralds). Any routed event
    /// with a smaller id has already been handed to the loops when this returns.
    public func issueID() -> UInt64 {
        state.withLock { $0.clock.next() }
    }

    // MARK: Routing

    /// Routes `message` to the streams of `pair` and appends it to the pair's history.
    public func route(_ message: some Collection<UInt8>, to pair: PairKey) -> Routed {
        var body: [UInt8] = []
        SSEEncoder.appendBody(data: message, to: &body)
        let now = Clock.monotonicNanoseconds()
        return state.withLock { state in
            let id = state.clock.next()
            let event = EncodedEvent(id: id, head: Self.idLine(id), body: body)
            var entry = state.pairs[pair] ?? Pair(streamsPerLoop: Array(repeating: 0, count: loopCount),
                                                  createdAfter: state.clock.latest - 1, touched: now)
            for loop in 0..<loopCount where entry.streamsPerLoop[loop] > 0 {
                state.sinks[loop].deliver(event, to: pair)
            }
            let streams = entry.streams
            guard limits.eventsPerPair > 0 else {
                if streams > 0 { state.pairs[pair] = entry }
                return Routed(id: id, streams: streams)
            }
            entry.events.append(event)
            entry.bytes += event.size
            state.historyBytes += event.size
            while entry.events.count > limits.eventsPerPair, let old = entry.events.popFirst() {
                entry.bytes -= old.size
                state.historyBytes -= old.size
                entry.evictedUpTo = max(entry.evictedUpTo, old.id)
            }
            if streams == 0 {
                entry.touched = now
                if !entry.awaitingExpiry {
                    entry.awaitingExpiry = true
                    state.expiry.append((pair, now + limits.ttlNanoseconds))
                }
            }
            Self.touchLRU(&entry, pair, &state)
            state.pairs[pair] = entry
            Self.enforceMemory(&state, limits.memoryBytes)
            return Routed(id: id, streams: streams)
        }
    }

    static func idLine(_ id: UInt64) -> [UInt8] {
        var head: [UInt8] = []
        head.reserveCapacity(24)
        SSEEncoder.appendIDLine(id, to: &head)
        return head
    }

    // MARK: Stored backdoor messages

    /// Replaces every stored message (start-up, from the state file); broadcasts nothing.
    public func loadHeralds(_ messages: [String: [UInt8]]) {
        state.withLock { state in
            state.heralds = [:]
            for (type, message) in messages { state.heralds[type] = (message, Self.heraldBody(type: type, message: message)) }
        }
    }

    /// Stores `message` under `type` and broadcasts `TTT<message>` to every stream.
    public func storeHerald(type: String, message: [UInt8]) {
        let body = Self.heraldBody(type: type, message: message)
        state.withLock { state in
            state.heralds[type] = (message, body)
            Self.broadcast([body], &state)
        }
    }

    /// Removes the message of `type` and broadcasts `TTTdelete` to every stream.
    public func removeHerald(type: String) {
        let body = Self.heraldBody(type: type, message: Array("delete".utf8))
        state.withLock { state in
            state.heralds[type] = nil
            Self.broadcast([body], &state)
        }
    }

    /// Sends every stored message to every stream again (the periodic herald).
    public func rebroadcastHeralds() {
        state.withLock { state in
            guard !state.heralds.isEmpty else { return }
            Self.broadcast(state.heralds.sorted { $0.key < $1.key }.map(\.value.body), &state)
        }
    }

    /// The stored messages, ascending by type.
    public func heralds() -> [(type: String, message: [UInt8])] {
        state.withLock { $0.heralds.sorted { $0.key < $1.key }.map { ($0.key, $0.value.message) } }
    }

    private static func broadcast(_ bodies: [[UInt8]], _ state: inout State) {
        let events = bodies.map { body in
            let id = state.clock.next()
            return EncodedEvent(id: id, head: idLine(id), body: body)
        }
        for sink in state.sinks { sink.broadcast(events) }
    }

    static func heraldBody(type: String, message: [UInt8]) -> [UInt8] {
        var body: [UInt8] = []
        SSEEncoder.appendBody(data: Array(type.utf8) + message, to: &body)
        return body
    }

    // MARK: Streams

    /// Registers a stream of `pair` on `loop`; with `lastEventID`, computes its replay.
    public func openStream(_ pair: PairKey, loop: Int, lastEventID: UInt64?) -> StreamStart {
        let now = Clock.monotonicNanoseconds()
        return state.withLock { state in
            let tickID = state.clock.next()
            // Each stored message gets its own id after the Tick's, or, on a resumed stream,
            // the requested one.
            let heralds = state.heralds.sorted { $0.key < $1.key }.map { stored in
                let id = lastEventID ?? state.clock.next()
                return EncodedEvent(id: id, head: Self.idLine(id), body: stored.value.body)
            }
            let startID = state.clock.latest
            var entry = state.pairs[pair] ?? Pair(streamsPerLoop: Array(repeating: 0, count: loopCount),
                                                  createdAfter: tickID, touched: now)
            entry.streamsPerLoop[loop] += 1
            entry.streams += 1
            var replay: [EncodedEvent] = []
            var gap = false
            if let lastEventID, limits.eventsPerPair > 0 {
                replay = entry.events.filter { $0.id > lastEventID }
                gap = lastEventID < state.clock.first
                    || lastEventID < entry.evictedUpTo
                    || (lastEventID < entry.createdAfter && lastEventID < state.droppedUpTo)
            }
            if limits.eventsPerPair > 0 { Self.touchLRU(&entry, pair, &state) }
            state.pairs[pair] = entry
            return StreamStart(tickID: tickID, startID: startID, replay: replay, gap: gap, heralds: heralds)
        }
    }

    /// Unregisters a stream opened with `openStream`.
    public func closeStream(_ pair: PairKey, loop: Int) {
        let now = Clock.monotonicNanoseconds()
        state.withLock { state in
            guard var entry = state.pairs[pair] else { return }
            entry.streamsPerLoop[loop] -= 1
            entry.streams -= 1
            if entry.streams == 0 {
                if entry.events.isEmpty {
                    Self.drop(pair, entry, &state)
                    return
                }
                entry.touched = now
                if !entry.awaitingExpiry {
                    entry.awaitingExpiry = true
                    state.expiry.append((pair, now + limits.ttlNanoseconds))
                }
            }
            state.pairs[pair] = entry
        }
    }

    // MARK: Expiry

    /// Drops histories whose pair has had no stream and no message for the TTL.
    public func expireHistories(now: UInt64 = Clock.monotonicNanoseconds()) {
        state.withLock { state in
            while let first = state.expiry.first, first.deadline <= now {
                state.expiry.removeFirst()
                guard var entry = state.pairs[first.pair], entry.awaitingExpiry else { continue }
                if entry.streams > 0 {
                    entry.awaitingExpiry = false
                    state.pairs[first.pair] = entry
                } else if entry.touched + limits.ttlNanoseconds > now {
                    // Touched since it was queued: look again at its new deadline.
                    state.expiry.append((first.pair, entry.touched + limits.ttlNanoseconds))
                } else {
                    Self.drop(first.pair, entry, &state)
                }
            }
        }
    }

    private static func drop(_ pair: PairKey, _ entry: Pair, _ state: inout State) {
        state.historyBytes -= entry.bytes
        // Whatever this pair knew it had lost, or still held, is now unknowable for it.
        if let newest = entry.events.last { state.droppedUpTo = max(state.droppedUpTo, newest.id) }
        state.droppedUpTo = max(state.droppedUpTo, entry.evictedUpTo)
        state.pairs[pair] = nil
    }

    // MARK: Memory bound

    private static func touchLRU(_ entry: inout Pair, _ pair: PairKey, _ state: inout State) {
        state.nextStamp += 1
        entry.lruStamp = state.nextStamp
        state.lru.append((pair, state.nextStamp))
        // Stale entries are skipped on eviction; compact when they outnumber live ones.
        if state.lru.count > 2 * state.pairs.count + 1024 {
            state.lru = Deque(state.lru.filter { state.pairs[$0.pair]?.lruStamp == $0.stamp || $0.pair == pair && $0.stamp == entry.lruStamp })
        }
    }

    /// Evicts whole histories, least recently used pair first, until under the bound. The
    /// bound wins over open streams: their pair keeps its streams, not its history.
    private static func enforceMemory(_ state: inout State, _ bound: Int) {
        while state.historyBytes > bound, let oldest = state.lru.popFirst() {
            guard var entry = state.pairs[oldest.pair], entry.lruStamp == oldest.stamp else { continue }
            if entry.streams == 0 {
                drop(oldest.pair, entry, &state)
                continue
            }
            if let newest = entry.events.last { entry.evictedUpTo = max(entry.evictedUpTo, newest.id) }
            state.historyBytes -= entry.bytes
            entry.events.removeAll()
            entry.bytes = 0
            state.pairs[oldest.pair] = entry
        }
    }

    // MARK: Observation

    /// Pairs with a stream or a history.
    public var pairCount: Int { state.withLock { $0.pairs.count } }
    /// Bytes held by all histories.
    public var historyBytes: Int { state.withLock { $0.historyBytes } }
}
