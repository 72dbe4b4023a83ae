import DequeModule
import QriHTTP
public import QriLoop
import Synchronization

/// Where the registry hands events for the streams of one loop. Called under the registry's
/// lock, so it must only queue work (never block, never call back into the registry).
public protocol EventSink: Sendable {
    /// Queues `deliveries`, in order, each for the loop's streams of its pair.
    func deliver(_ deliveries: [PairDelivery])
    /// Queues `events` for every stream of the loop (backdoor broadcasts).
    func broadcast(_ events: [EncodedEvent])
}

/// One event for the streams of one pair on one loop.
public struct PairDelivery: Sendable {
    /// The registry's number for the pair, stable while the pair has a stream.
    public let slot: Int
    public let event: EncodedEvent
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
    /// The pair's number while it has a stream: what deliveries to the loops carry.
    public let slot: Int
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

    /// One pair's state. Pairs live in numbered slots, so that the loops can index their
    /// streams by a small integer, and are linked from least to most recently used.
    private struct Pair {
        let key: PairKey
        /// `PairIndex.hash` of the key.
        let hash: Int
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
        var awaitingExpiry = false
        var older = -1
        var newer = -1
        var linked = false

        static let vacant = Pair(key: PairKey(peer: [], checksum: []), hash: 0, streamsPerLoop: [], createdAfter: 0, touched: 0)

        func hasKey(hash: Int, peer: UnsafeRawBufferPointer, checksum: UnsafeRawBufferPointer) -> Bool {
            guard self.hash == hash else { return false }
            return key.peer.withUnsafeBytes { $0.elementsEqual(peer) } && key.checksum.withUnsafeBytes { $0.elementsEqual(checksum) }
        }
    }

    private struct State {
        var clock: EventIDClock
        /// Pairs by slot; a freed slot holds `Pair.vacant` until reused. Not optional, so
        /// that fields are read and changed in place, never by copying a whole pair.
        var slots: [Pair] = []
        var freeSlots: [Int] = []
        var index = PairIndex()
        var oldest = -1
        var newest = -1
        var historyBytes = 0
        /// The largest id dropped together with a whole pair: a pair created later cannot
        /// tell whether it had events before that.
        var droppedUpTo: UInt64 = 0
        var expiry = Deque<(pair: PairKey, deadline: UInt64)>()
        var sinks: [any EventSink] = []
        /// Stored backdoor messages by three-digit type; the body is `TTT<message>` encoded.
        var heralds: [String: (message: [UInt8], body: [UInt8])] = [:]

        init(clock: EventIDClock) { self.clock = clock }

        /// The slot of the pair with these key bytes and `PairIndex.hash`, if it has one.
        func find(hash: Int, peer: UnsafeRawBufferPointer, checksum: UnsafeRawBufferPointer) -> Int? {
            index.find(hash: hash) { slots[$0].hasKey(hash: hash, peer: peer, checksum: checksum) }
        }

        func find(_ key: PairKey) -> Int? {
            key.peer.withUnsafeBytes { peer in
                key.checksum.withUnsafeBytes { checksum in
                    find(hash: PairIndex.hash(peer: peer, checksum: checksum), peer: peer, checksum: checksum)
                }
            }
        }

        /// The slot of `key`, made if new.
        mutating func slot(of key: PairKey, loops: Int, createdAfter: UInt64, now: UInt64) -> Int {
            find(key) ?? makeSlot(for: key, hash: PairIndex.hash(key), loops: loops, createdAfter: createdAfter, now: now)
        }

        /// Gives `key`, which has no slot, a new one.
        mutating func makeSlot(for key: PairKey, hash: Int, loops: Int, createdAfter: UInt64, now: UInt64) -> Int {
            let pair = Pair(key: key, hash: hash, streamsPerLoop: Array(repeating: 0, count: loops),
                            createdAfter: createdAfter, touched: now)
            let s: Int
            if let free = freeSlots.popLast() {
                s = free
                slots[s] = pair
            } else {
                s = slots.count
                slots.append(pair)
            }
            let slots = self.slots
            index.insert(slot: s, hash: hash) { slots[$0].hash }
            return s
        }

        /// Marks slot `s` most recently used.
        mutating func touch(_ s: Int) {
            unlink(s)
            slots[s].older = newest
            slots[s].newer = -1
            slots[s].linked = true
            if newest >= 0 { slots[newest].newer = s } else { oldest = s }
            newest = s
        }

        mutating func unlink(_ s: Int) {
            guard slots[s].linked else { return }
            let older = slots[s].older, newer = slots[s].newer
            if older >= 0 { slots[older].newer = newer } else { oldest = newer }
            if newer >= 0 { slots[newer].older = older } else { newest = older }
            slots[s].linked = false
        }

        /// Forgets slot `s` and its history.
        mutating func drop(_ s: Int) {
            unlink(s)
            let pair = slots[s]
            historyBytes -= pair.bytes
            // Whatever this pair knew it had lost, or still held, is now unknowable for it.
            if let newest = pair.events.last { droppedUpTo = max(droppedUpTo, newest.id) }
            droppedUpTo = max(droppedUpTo, pair.evictedUpTo)
            slots[s] = .vacant
            let slots = self.slots
            index.remove(slot: s, hash: pair.hash) { slots[$0].hash }
            freeSlots.append(s)
        }

        mutating func scheduleExpiry(_ s: Int, now: UInt64, ttl: UInt64) {
            slots[s].touched = now
            if !slots[s].awaitingExpiry {
                slots[s].awaitingExpiry = true
                expiry.append((slots[s].key, now + ttl))
            }
        }

        /// Evicts whole histories, least recently used pair first, until under the bound.
        /// The bound wins over open streams: their pair keeps its streams, not its history.
        mutating func enforceMemory(_ bound: Int) {
            while historyBytes > bound && oldest >= 0 {
                let s = oldest
                if slots[s].streams == 0 {
                    drop(s)
                    continue
                }
                unlink(s)
                if let newest = slots[s].events.last { slots[s].evictedUpTo = max(slots[s].evictedUpTo, newest.id) }
                historyBytes -= slots[s].bytes
                slots[s].events.removeAll()
                slots[s].bytes = 0
            }
        }
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

    /// Lets go of the loops once they have stopped (they refer to the registry too).
    public func detach() {
        state.withLock { $0.sinks = [] }
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
        var routed = Routed(id: 0, streams: 0)
        route([IngestMessage(peer: pair.peer[...], checksum: pair.checksum[...], message: ArraySlice(message))]) { routed = $1 }
        return routed
    }

    /// Routes `messages` in order, as `route(_:to:)` does each, under one lock, with one
    /// hand-off per loop; calls `record` with each message's position and what routing it did.
    public func route(_ messages: [IngestMessage], record: (Int, Routed) -> Void) {
        // Everything that needs no lock is done first: data parts and key hashes.
        var bodies: [UInt8] = []
        var ends: [Int] = []
        var hashes: [Int] = []
        ends.reserveCapacity(messages.count)
        hashes.reserveCapacity(messages.count)
        for message in messages {
            SSEEncoder.appendBody(data: message.message, to: &bodies)
            ends.append(bodies.count)
            hashes.append(message.peer.withUnsafeBytes { peer in
                message.checksum.withUnsafeBytes { PairIndex.hash(peer: peer, checksum: $0) }
            })
        }
        let now = Clock.monotonicNanoseconds()
        let keepsHistory = limits.eventsPerPair > 0
        let loopCount = self.loopCount
        state.withLock { state in
            var handOffs = [[PairDelivery]](repeating: [], count: loopCount)
            var start = 0
            for (i, message) in messages.enumerated() {
                let id = state.clock.next()
                let event = EncodedEvent(id: id, body: bodies[start..<ends[i]])
                start = ends[i]
                let hash = hashes[i]
                let found = message.peer.withUnsafeBytes { peer in
                    message.checksum.withUnsafeBytes { state.find(hash: hash, peer: peer, checksum: $0) }
                }
                guard found != nil || keepsHistory else {
                    record(i, Routed(id: id, streams: 0))
                    continue
                }
                let s = found ?? state.makeSlot(for: message.pair, hash: hash, loops: loopCount, createdAfter: id - 1, now: now)
                let streams = state.slots[s].streams
                if streams > 0 {
                    for loop in 0..<loopCount where state.slots[s].streamsPerLoop[loop] > 0 {
                        handOffs[loop].append(PairDelivery(slot: s, event: event))
                    }
                }
                record(i, Routed(id: id, streams: streams))
                guard keepsHistory else { continue }
                // Mutated in place: the history is never copied.
                state.slots[s].events.append(event)
                state.slots[s].bytes += event.size
                state.historyBytes += event.size
                while state.slots[s].events.count > limits.eventsPerPair, let old = state.slots[s].events.popFirst() {
                    state.slots[s].bytes -= old.size
                    state.historyBytes -= old.size
                    state.slots[s].evictedUpTo = max(state.slots[s].evictedUpTo, old.id)
                }
                if streams == 0 { state.scheduleExpiry(s, now: now, ttl: limits.ttlNanoseconds) }
                state.touch(s)
                // Drops only pairs without streams, so no slot handed off above is reused here.
                state.enforceMemory(limits.memoryBytes)
            }
            // Under the lock that issued the ids: every loop sees events in id order.
            for loop in 0..<loopCount where !handOffs[loop].isEmpty {
                state.sinks[loop].deliver(handOffs[loop])
            }
        }
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
            return EncodedEvent(id: id, body: body)
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
        let keepsHistory = limits.eventsPerPair > 0
        return state.withLock { state in
            let tickID = state.clock.next()
            // Each stored message gets its own id after the Tick's, or, on a resumed stream,
            // the requested one.
            let heralds = state.heralds.sorted { $0.key < $1.key }.map { stored in
                let id = lastEventID ?? state.clock.next()
                return EncodedEvent(id: id, body: stored.value.body)
            }
            let startID = state.clock.latest
            let s = state.slot(of: pair, loops: loopCount, createdAfter: tickID, now: now)
            state.slots[s].streamsPerLoop[loop] += 1
            state.slots[s].streams += 1
            var replay: [EncodedEvent] = []
            var gap = false
            if let lastEventID, keepsHistory {
                let entry = state.slots[s]
                replay = entry.events.filter { $0.id > lastEventID }
                gap = lastEventID < state.clock.first
                    || lastEventID < entry.evictedUpTo
                    || (lastEventID < entry.createdAfter && lastEventID < state.droppedUpTo)
            }
            if keepsHistory { state.touch(s) }
            return StreamStart(tickID: tickID, startID: startID, replay: replay, gap: gap, heralds: heralds, slot: s)
        }
    }

    /// Unregisters a stream opened with `openStream`.
    public func closeStream(_ pair: PairKey, loop: Int) {
        let now = Clock.monotonicNanoseconds()
        state.withLock { state in
            guard let s = state.find(pair) else { return }
            state.slots[s].streamsPerLoop[loop] -= 1
            state.slots[s].streams -= 1
            guard state.slots[s].streams == 0 else { return }
            if state.slots[s].events.isEmpty {
                state.drop(s)
            } else {
                state.scheduleExpiry(s, now: now, ttl: limits.ttlNanoseconds)
            }
        }
    }

    // MARK: Expiry

    /// Drops histories whose pair has had no stream and no message for the TTL.
    public func expireHistories(now: UInt64 = Clock.monotonicNanoseconds()) {
        let ttl = limits.ttlNanoseconds
        state.withLock { state in
            while let first = state.expiry.first, first.deadline <= now {
                state.expiry.removeFirst()
                guard let s = state.find(first.pair), state.slots[s].awaitingExpiry else { continue }
                if state.slots[s].streams > 0 {
                    state.slots[s].awaitingExpiry = false
                } else if state.slots[s].touched + ttl > now {
                    // Touched since it was queued: look again at its new deadline.
                    state.expiry.append((first.pair, state.slots[s].touched + ttl))
                } else {
                    state.drop(s)
                }
            }
        }
    }

    // MARK: Observation

    /// Pairs with a stream or a history.
    public var pairCount: Int { state.withLock { $0.index.count } }
    /// Bytes held by all histories.
    public var historyBytes: Int { state.withLock { $0.historyBytes } }
}
