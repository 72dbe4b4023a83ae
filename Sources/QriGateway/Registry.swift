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
    /// streams by a small integer, and are linked from least to most recently used, and, while
    /// they have a history and no stream, from the first to the last to expire.
    ///
    /// A pair that holds history is charged, in `bytes` and the registry's `historyBytes`,
    /// what it costs in memory (see `overhead` and `EncodedEvent.heapBytes`), not only its
    /// events' bytes.
    private struct Pair {
        /// The peer's bytes, then the checksum's: one allocation per pair.
        let key: [UInt8]
        let peerLength: Int32
        var streams: Int32 = 0
        /// `PairIndex.hash` of the key.
        let hash: Int
        /// Streams per loop; allocated while the pair has a stream, else empty (no memory).
        var streamsPerLoop: [Int32] = []
        /// The history, oldest first from `head`: it grows up to HISTORY events, then is a
        /// ring whose oldest event is overwritten.
        var events: [EncodedEvent] = []
        var head: Int32 = 0
        /// The capacity reserved for `events` (they grow by doubling, up to HISTORY).
        var reserved: Int32 = 0
        /// What this pair is charged while it holds history (0 when it holds none).
        var bytes = 0
        /// The largest id that left this pair's history.
        var evictedUpTo: UInt64 = 0
        /// Ids from here on are all known to this pair's history.
        let createdAfter: UInt64
        /// When the pair last became idle or got a message while idle (monotonic ns).
        var touched: UInt64 = 0
        /// Place in the order of use (every pair with history or a stream while HISTORY > 0).
        var recency = Links()
        /// Place in the order of expiry (pairs with history and no stream).
        var expiry = Links()

        static let vacant = Pair(key: [], peerLength: 0, hash: 0, createdAfter: 0)

        init(key: [UInt8], peerLength: Int32, hash: Int, createdAfter: UInt64) {
            self.key = key
            self.peerLength = peerLength
            self.hash = hash
            self.createdAfter = createdAfter
        }

        func hasKey(hash: Int, peer: UnsafeRawBufferPointer, checksum: UnsafeRawBufferPointer) -> Bool {
            guard self.hash == hash, Int(peerLength) == peer.count, key.count == peer.count + checksum.count else { return false }
            return key.withUnsafeBytes { $0.prefix(peer.count).elementsEqual(peer) && $0.dropFirst(peer.count).elementsEqual(checksum) }
        }

        /// The newest event of the history.
        var newest: EncodedEvent? { events.isEmpty ? nil : events[(Int(head) + events.count - 1) % events.count] }

        /// The history's events with ids above `id`, oldest first.
        func events(after id: UInt64) -> [EncodedEvent] {
            var result: [EncodedEvent] = []
            for i in 0..<events.count where events[(Int(head) + i) % events.count].id > id {
                result.append(events[(Int(head) + i) % events.count])
            }
            return result
        }

        /// What the pair's own memory costs while it holds history: its slot, its share of
        /// the free-slot list and of the index (at most 8/3 four-byte buckets per pair), its
        /// key's allocation. The history's storage and events are charged as they change.
        var overhead: Int {
            MemoryLayout<Pair>.stride + MemoryLayout<Int>.stride + 11 + HeapCost.array(of: UInt8.self, capacity: key.count)
        }
    }

    /// A pair's neighbours in one of the registry's lists of slots, oldest to newest.
    private struct Links {
        var older: Int32 = -1
        var newer: Int32 = -1
        var linked = false
    }

    /// The ends of one list of slots.
    private struct Ends {
        var oldest = -1
        var newest = -1

        /// Makes slot `s` the newest of the list that `links` threads through `slots`.
        @inline(__always)
        mutating func append(_ s: Int, _ links: WritableKeyPath<Pair, Links>, in slots: inout [Pair]) {
            remove(s, links, in: &slots)
            slots[s][keyPath: links] = Links(older: Int32(newest), newer: -1, linked: true)
            if newest >= 0 { slots[newest][keyPath: links].newer = Int32(s) } else { oldest = s }
            newest = s
        }

        /// Takes slot `s` out of the list, if it is in it.
        @inline(__always)
        mutating func remove(_ s: Int, _ links: WritableKeyPath<Pair, Links>, in slots: inout [Pair]) {
            guard slots[s][keyPath: links].linked else { return }
            let older = Int(slots[s][keyPath: links].older), newer = Int(slots[s][keyPath: links].newer)
            if older >= 0 { slots[older][keyPath: links].newer = Int32(newer) } else { oldest = newer }
            if newer >= 0 { slots[newer][keyPath: links].older = Int32(older) } else { newest = older }
            slots[s][keyPath: links].linked = false
        }
    }

    private struct State {
        var clock: EventIDClock
        /// Pairs by slot; a freed slot holds `Pair.vacant` (which owns no memory) until
        /// reused. Freed slots are reused before the array grows, so it never holds more
        /// slots than pairs ever existed at once, which HISTORY_MEMORY (pairs with history)
        /// and the connection limits (pairs with streams only) bound. Not optional, so that
        /// fields are read and changed in place, never by copying a whole pair.
        var slots: [Pair] = []
        var freeSlots: [Int] = []
        var index = PairIndex()
        /// Pairs from least to most recently used.
        var recency = Ends()
        /// The idle pairs (history, no stream) by `touched`, first to expire first.
        var expiry = Ends()
        var historyBytes = 0
        /// Per dropped pair, the newest id it lost: a pair made again later knows exactly
        /// whether a client missed something, and other pairs are not concerned.
        var lost: LostRecords
        var sinks: [any EventSink] = []
        /// Stored backdoor messages by three-digit type; the body is `TTT<message>` encoded.
        var heralds: [String: (message: [UInt8], body: [UInt8])] = [:]

        init(clock: EventIDClock, lostRecords: Int) {
            self.clock = clock
            lost = LostRecords(capacity: lostRecords)
        }

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
        mutating func slot(of key: PairKey, createdAfter: UInt64) -> Int {
            key.peer.withUnsafeBytes { peer in
                key.checksum.withUnsafeBytes { checksum in
                    let hash = PairIndex.hash(peer: peer, checksum: checksum)
                    return find(hash: hash, peer: peer, checksum: checksum)
                        ?? makeSlot(hash: hash, peer: peer, checksum: checksum, createdAfter: createdAfter)
                }
            }
        }

        /// Gives the pair with these key bytes, which has no slot, a new one.
        mutating func makeSlot(hash: Int, peer: UnsafeRawBufferPointer, checksum: UnsafeRawBufferPointer,
                               createdAfter: UInt64) -> Int {
            var key: [UInt8] = []
            key.reserveCapacity(peer.count + checksum.count)
            key.append(contentsOf: peer)
            key.append(contentsOf: checksum)
            let pair = Pair(key: key, peerLength: Int32(peer.count), hash: hash, createdAfter: createdAfter)
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
        mutating func touch(_ s: Int) { recency.append(s, \.recency, in: &slots) }

        mutating func unlink(_ s: Int) { recency.remove(s, \.recency, in: &slots) }

        /// Appends `event` to the history of slot `s`, dropping its oldest beyond `limit`
        /// events, and charges the pair (and `historyBytes`) for what that costs.
        mutating func append(_ event: EncodedEvent, to s: Int, limit: Int) {
            var charge = event.heapBytes
            if slots[s].events.isEmpty { charge += slots[s].overhead }
            let count = slots[s].events.count
            if count < limit {
                // Grows by doubling, never past the limit, and only here: `append` then
                // always has room, so the storage is what was reserved.
                let reserved = Int(slots[s].reserved)
                if count == reserved {
                    let grown = Swift.min(limit, Swift.max(2 * count, 1))
                    slots[s].events.reserveCapacity(grown)
                    slots[s].reserved = Int32(clamping: grown)
                    charge += HeapCost.array(of: EncodedEvent.self, capacity: grown)
                        - HeapCost.array(of: EncodedEvent.self, capacity: reserved)
                }
                slots[s].events.append(event)
            } else {
                let head = Int(slots[s].head)
                let old = slots[s].events[head]
                charge -= old.heapBytes
                slots[s].evictedUpTo = Swift.max(slots[s].evictedUpTo, old.id)
                slots[s].events[head] = event
                slots[s].head = head + 1 == count ? 0 : Int32(head + 1)
            }
            slots[s].bytes += charge
            historyBytes += charge
        }

        /// Forgets the history of slot `s` (which stays), and its charge.
        mutating func removeHistory(_ s: Int) {
            if let newest = slots[s].newest { slots[s].evictedUpTo = Swift.max(slots[s].evictedUpTo, newest.id) }
            historyBytes -= slots[s].bytes
            slots[s].bytes = 0
            slots[s].events = []
            slots[s].head = 0
            slots[s].reserved = 0
        }

        /// Forgets slot `s` and its history.
        mutating func drop(_ s: Int) {
            unlink(s)
            unlinkIdle(s)
            removeHistory(s)
            // Whatever this pair knew it had lost, or still held, is kept as one small record.
            let hash = slots[s].hash
            lost.record(hash: hash, lostUpTo: slots[s].evictedUpTo)
            slots[s] = .vacant
            let slots = self.slots
            index.remove(slot: s, hash: hash) { slots[$0].hash }
            freeSlots.append(s)
        }

        /// Slot `s` (no stream) is idle from `now`: it moves to the end of the expiry order.
        mutating func markIdle(_ s: Int, now: UInt64) {
            // Callers read the clock before the lock: keep the order by `touched` regardless.
            slots[s].touched = expiry.newest >= 0 ? Swift.max(now, slots[expiry.newest].touched) : now
            expiry.append(s, \.expiry, in: &slots)
        }

        mutating func unlinkIdle(_ s: Int) { expiry.remove(s, \.expiry, in: &slots) }

        /// Evicts whole histories, least recently used pair first, until under the bound.
        /// The bound wins over open streams: their pair keeps its streams, not its history.
        mutating func enforceMemory(_ bound: Int) {
            while historyBytes > bound && recency.oldest >= 0 {
                let s = recency.oldest
                if slots[s].streams == 0 {
                    drop(s)
                    continue
                }
                unlink(s)
                removeHistory(s)
            }
        }
    }

    public let limits: Limits
    private let state: Mutex<State>

    public init(limits: Limits, loopCount: Int, clock: EventIDClock = EventIDClock()) {
        self.limits = limits
        self.loopCount = loopCount
        // A sixteenth of HISTORY_MEMORY holds the records of dropped pairs; the rest holds
        // histories.
        let recordBudget = limits.memoryBytes / 16
        historyBound = limits.memoryBytes - recordBudget
        state = Mutex(State(clock: clock, lostRecords: max(recordBudget / LostRecords.bytesPerRecord, 16)))
    }

    /// What histories may hold, HISTORY_MEMORY less the records of dropped pairs.
    private let historyBound: Int

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
                let s: Int
                if let found {
                    s = found
                } else {
                    s = message.peer.withUnsafeBytes { peer in
                        message.checksum.withUnsafeBytes { state.makeSlot(hash: hash, peer: peer, checksum: $0, createdAfter: id - 1) }
                    }
                }
                let streams = Int(state.slots[s].streams)
                if streams > 0 {
                    for loop in 0..<loopCount where state.slots[s].streamsPerLoop[loop] > 0 {
                        handOffs[loop].append(PairDelivery(slot: s, event: event))
                    }
                }
                record(i, Routed(id: id, streams: streams))
                guard keepsHistory else { continue }
                // Mutated in place: the history is never copied.
                state.append(event, to: s, limit: limits.eventsPerPair)
                if streams == 0 { state.markIdle(s, now: now) }
                state.touch(s)
                // Drops only pairs without streams, so no slot handed off above is reused here.
                state.enforceMemory(historyBound)
            }
            // Under the lock that issued the ids: every loop sees events in id order.
            for loop in 0..<loopCount where !handOffs[loop].isEmpty {
                state.sinks[loop].deliver(handOffs[loop])
            }
        }
    }

    /// Hands events that came from another node (through Redis) to the loops holding streams
    /// of their pairs, in order: no id is issued and no history kept here (cluster mode keeps
    /// histories in Redis). Returns how many had a stream on this node.
    @discardableResult
    public func deliverFromCluster(_ events: [(pair: PairKey, event: EncodedEvent)]) -> Int {
        let loopCount = self.loopCount
        return state.withLock { state in
            var handOffs = [[PairDelivery]](repeating: [], count: loopCount)
            var delivered = 0
            for (pair, event) in events {
                guard let s = state.find(pair), state.slots[s].streams > 0 else { continue }
                delivered += 1
                for loop in 0..<loopCount where state.slots[s].streamsPerLoop[loop] > 0 {
                    handOffs[loop].append(PairDelivery(slot: s, event: event))
                }
            }
            for loop in 0..<loopCount where !handOffs[loop].isEmpty {
                state.sinks[loop].deliver(handOffs[loop])
            }
            return delivered
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

    /// What a stored message sends: its type, then the message (`TTT<message>`).
    static func heraldData(type: String, message: [UInt8]) -> [UInt8] {
        Array(type.utf8) + message
    }

    static func heraldBody(type: String, message: [UInt8]) -> [UInt8] {
        var body: [UInt8] = []
        SSEEncoder.appendBody(data: Array(type.utf8) + message, to: &body)
        return body
    }

    // MARK: Streams

    /// Registers a stream of `pair` on `loop`; with `lastEventID`, computes its replay.
    public func openStream(_ pair: PairKey, loop: Int, lastEventID: UInt64?) -> StreamStart {
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
            let s = state.slot(of: pair, createdAfter: tickID)
            if state.slots[s].streamsPerLoop.isEmpty { state.slots[s].streamsPerLoop = Array(repeating: 0, count: loopCount) }
            state.slots[s].streamsPerLoop[loop] += 1
            state.slots[s].streams += 1
            state.unlinkIdle(s)
            var replay: [EncodedEvent] = []
            var gap = false
            if let lastEventID, keepsHistory {
                replay = state.slots[s].events(after: lastEventID)
                gap = lastEventID < state.clock.first
                    || lastEventID < state.slots[s].evictedUpTo
                    || (lastEventID < state.slots[s].createdAfter && lastEventID < state.lost.lostUpTo(hash: state.slots[s].hash))
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
                state.slots[s].streamsPerLoop = []
                state.markIdle(s, now: now)
            }
        }
    }

    // MARK: Expiry

    /// Drops histories whose pair has had no stream and no message for the TTL.
    public func expireHistories(now: UInt64 = Clock.monotonicNanoseconds()) {
        let ttl = limits.ttlNanoseconds
        state.withLock { state in
            // Idle pairs are in order of `touched`: the first one not due ends the walk.
            while case let s = state.expiry.oldest, s >= 0,
                  now >= state.slots[s].touched, now - state.slots[s].touched >= ttl {
                state.drop(s)
            }
        }
    }

    // MARK: Observation

    /// Pairs with a stream or a history.
    public var pairCount: Int { state.withLock { $0.index.count } }
    /// What all histories are charged against HISTORY_MEMORY: their events' buffers, their
    /// storage, and the bookkeeping of each pair that holds history.
    public var historyBytes: Int { state.withLock { $0.historyBytes } }
}

/// For each dropped pair (by its hash), the newest id it lost, so that a client resuming a
/// pair that was dropped gets a `gap` exactly when it missed something, and a client of a
/// pair that lost nothing gets none. Bounded: past `capacity` the oldest records are folded
/// into one id that then counts for every pair (conservative: a possible gap is reported).
struct LostRecords {
    /// Memory charged per record (dictionary entry and order queue), counted in
    /// HISTORY_MEMORY's share for records.
    static let bytesPerRecord = 64

    private var byHash: [Int: UInt64] = [:]
    private var order = Deque<Int>()
    private(set) var foldedUpTo: UInt64 = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    mutating func record(hash: Int, lostUpTo: UInt64) {
        guard lostUpTo > 0 else { return }
        if let existing = byHash[hash] {
            byHash[hash] = Swift.max(existing, lostUpTo)
            return
        }
        if byHash.count >= capacity, let oldest = order.popFirst(), let id = byHash.removeValue(forKey: oldest) {
            foldedUpTo = Swift.max(foldedUpTo, id)
        }
        byHash[hash] = lostUpTo
        order.append(hash)
    }

    /// The newest id a pair with this hash may have lost.
    func lostUpTo(hash: Int) -> UInt64 { Swift.max(byHash[hash] ?? 0, foldedUpTo) }
}
