import QriTestSupport
import Foundation
@testable import QriGateway
import QriLoop
import Synchronization
import Testing

/// Records what the registry hands to one loop. Thread-safe.
final class RecordingSink: EventSink {
    struct Delivery: Sendable {
        let id: UInt64
        let slot: Int
        let body: [UInt8]
    }

    let deliveries = Mutex<[Delivery]>([])
    let handOffs = Mutex(0)
    let broadcasts = Mutex<[[EncodedEvent]]>([])

    func deliver(_ deliveries: [PairDelivery]) {
        handOffs.withLock { $0 += 1 }
        self.deliveries.withLock {
            $0 += deliveries.map { Delivery(id: $0.event.id, slot: $0.slot, body: Array($0.event.body)) }
        }
    }

    func broadcast(_ events: [EncodedEvent]) {
        broadcasts.withLock { $0.append(events) }
    }

    var delivered: [Delivery] { deliveries.withLock { $0 } }
    var deliveredIDs: [UInt64] { delivered.map(\.id) }
    var broadcasted: [[EncodedEvent]] { broadcasts.withLock { $0 } }
}

private let A = PairKey(peer: "alice", checksum: "a1")
private let B = PairKey(peer: "bob", checksum: "b1")
private let C = PairKey(peer: "carol", checksum: "c1")
private let D = PairKey(peer: "dave", checksum: "d1")

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
private func text(_ bytes: some Collection<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

private func makeRegistry(events: Int = 64, ttlSeconds: Double = 300, memory: Int = 64 << 20,
                          loops: Int = 1) -> (Registry, [RecordingSink]) {
    let registry = Registry(limits: .init(eventsPerPair: events, ttlNanoseconds: UInt64(ttlSeconds * 1e9), memoryBytes: memory),
                            loopCount: loops)
    let sinks = (0..<loops).map { _ in RecordingSink() }
    registry.attach(sinks)
    return (registry, sinks)
}

private let farFuture: UInt64 = 1 << 62

@Suite struct RegistryTests {
    // MARK: History and replay

    @Test func routingToAPairWithoutStreamsKeepsHistory() {
        let (registry, sinks) = makeRegistry()
        let before = registry.issueID()
        let routed = registry.route(bytes("hello\nworld"), to: A)
        #expect(routed.streams == 0)
        #expect(routed.id > before)
        #expect(registry.pairCount == 1)
        #expect(registry.historyBytes > 0)
        #expect(sinks[0].delivered.isEmpty)

        let start = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(start.replay.map(\.id) == [routed.id])
        #expect(!start.gap)
        #expect(text(start.replay[0].head) == "id: \(String(routed.id, radix: 16))\n")
        #expect(text(start.replay[0].body) == "data: hello\ndata: world\n\n")
        #expect(start.replay[0].size == start.replay[0].head.count + start.replay[0].body.count)
        #expect(start.tickID > routed.id)
        #expect(start.startID >= start.tickID)
    }

    @Test func openStreamWithoutLastEventIDReplaysNothing() {
        let (registry, _) = makeRegistry()
        _ = registry.route(bytes("x"), to: A)
        let start = registry.openStream(A, loop: 0, lastEventID: nil)
        #expect(start.replay.isEmpty)
        #expect(!start.gap)
    }

    @Test func replayIsExactlyTheNewerEventsInOrder() {
        let (registry, _) = makeRegistry()
        let before = registry.issueID()
        var ids: [UInt64] = []
        for i in 0..<5 {
            ids.append(registry.route(bytes("m\(i)"), to: A).id)
            _ = registry.route(bytes("other \(i)"), to: B)
        }
        #expect(ids == ids.sorted() && Set(ids).count == 5)

        let all = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(all.replay.map(\.id) == ids)
        #expect(all.replay.map { text($0.body) } == (0..<5).map { "data: m\($0)\n\n" })
        #expect(!all.gap)

        let some = registry.openStream(A, loop: 0, lastEventID: ids[1])
        #expect(some.replay.map(\.id) == Array(ids[2...]))
        #expect(!some.gap)

        let none = registry.openStream(A, loop: 0, lastEventID: ids[4])
        #expect(none.replay.isEmpty)
        #expect(!none.gap)

        // An id from the future (another server's, or a client's invention): nothing to replay.
        let future = registry.openStream(A, loop: 0, lastEventID: UInt64.max)
        #expect(future.replay.isEmpty)
    }

    @Test func replayDoesNotMixPairs() {
        let (registry, _) = makeRegistry()
        let before = registry.issueID()
        let a = registry.route(bytes("for a"), to: A).id
        _ = registry.route(bytes("for a2"), to: PairKey(peer: "alice", checksum: "other"))
        _ = registry.route(bytes("for a3"), to: PairKey(peer: "other", checksum: "a1"))
        #expect(registry.openStream(A, loop: 0, lastEventID: before).replay.map(\.id) == [a])
    }

    @Test func eventsPerPairBoundEvictsOldestAndReportsAGap() {
        let (registry, _) = makeRegistry(events: 3)
        let before = registry.issueID()
        let ids = (0..<5).map { registry.route(bytes("m\($0)"), to: A).id }

        let fromStart = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(fromStart.gap)
        #expect(fromStart.replay.map(\.id) == Array(ids[2...]))
        #expect(fromStart.replay.map { text($0.body) } == ["data: m2\n\n", "data: m3\n\n", "data: m4\n\n"])

        // The client got m0 only: m1 is gone.
        let afterFirst = registry.openStream(A, loop: 0, lastEventID: ids[0])
        #expect(afterFirst.gap)
        #expect(afterFirst.replay.map(\.id) == Array(ids[2...]))

        // The client got m1, the newest evicted one: nothing it needs is lost.
        let afterSecond = registry.openStream(A, loop: 0, lastEventID: ids[1])
        #expect(!afterSecond.gap)
        #expect(afterSecond.replay.map(\.id) == Array(ids[2...]))
    }

    @Test func historyOffMeansNoReplayNoGap() {
        let (registry, _) = makeRegistry(events: 0)
        let before = registry.issueID()
        for i in 0..<5 { _ = registry.route(bytes("m\(i)"), to: A) }
        #expect(registry.pairCount == 0)
        #expect(registry.historyBytes == 0)
        let start = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(start.replay.isEmpty)
        #expect(!start.gap)
        let ancient = registry.openStream(A, loop: 0, lastEventID: 1)
        #expect(ancient.replay.isEmpty)
        #expect(!ancient.gap)
        registry.closeStream(A, loop: 0)
        registry.closeStream(A, loop: 0)
        #expect(registry.pairCount == 0)
    }

    @Test func lastEventIDOlderThanFirstIDIsAGap() {
        let (registry, _) = makeRegistry()
        #expect(registry.openStream(A, loop: 0, lastEventID: registry.firstID - 1).gap)
        #expect(registry.openStream(A, loop: 0, lastEventID: 0).gap)
        // Even when history holds events for the pair.
        _ = registry.route(bytes("x"), to: B)
        let start = registry.openStream(B, loop: 0, lastEventID: registry.firstID - 1)
        #expect(start.gap)
        #expect(start.replay.count == 1)
        // An id this process issued is not.
        let issued = registry.issueID()
        #expect(!registry.openStream(C, loop: 0, lastEventID: issued).gap)
        #expect(issued >= registry.firstID)
    }

    // MARK: Memory bound

    /// What a pair with `events` routed events of `messageBytes` bytes is charged: the
    /// events and the pair's own bookkeeping.
    private func eventSize(messageBytes: Int, events: Int = 1, pair: PairKey = A) -> Int {
        let (probe, _) = makeRegistry()
        for _ in 0..<events { _ = probe.route([UInt8](repeating: 0x61, count: messageBytes), to: pair) }
        return probe.historyBytes
    }

    /// Which of `pairs` still have their history, by replay from `before`; opens a stream on each.
    private func replayCounts(_ registry: Registry, _ pairs: [PairKey], after before: UInt64) -> [Int] {
        pairs.map { registry.openStream($0, loop: 0, lastEventID: before).replay.count }
    }

    @Test func memoryBoundEvictsLeastRecentlyUsedPairFirst() {
        let message = [UInt8](repeating: 0x61, count: 1000)
        let size = eventSize(messageBytes: 1000)
        let (registry, _) = makeRegistry(memory: 3 * size + size / 2)
        let before = registry.issueID()
        _ = registry.route(message, to: A)
        _ = registry.route(message, to: B)
        _ = registry.route(message, to: C)
        #expect(registry.historyBytes == 3 * size)
        #expect(registry.pairCount == 3)
        // A is used again, so B is now the least recently used.
        _ = registry.route(message, to: A)
        #expect(registry.historyBytes == eventSize(messageBytes: 1000, events: 2) + size)
        #expect(registry.pairCount == 2)
        #expect(replayCounts(registry, [A, B, C], after: before) == [2, 0, 1])
        // B's events are gone: a client resuming it is told so.
        #expect(registry.openStream(B, loop: 0, lastEventID: before).gap)
    }

    @Test func openingAStreamCountsAsUse() {
        let message = [UInt8](repeating: 0x61, count: 1000)
        let size = eventSize(messageBytes: 1000)
        let (registry, _) = makeRegistry(memory: 3 * size + size / 2)
        let before = registry.issueID()
        _ = registry.route(message, to: A)
        _ = registry.route(message, to: B)
        _ = registry.route(message, to: C)
        _ = registry.openStream(A, loop: 0, lastEventID: nil)
        registry.closeStream(A, loop: 0)
        _ = registry.route(message, to: D)
        #expect(registry.pairCount == 3)
        #expect(replayCounts(registry, [A, B, C, D], after: before) == [1, 0, 1, 1])
    }

    @Test func memoryBoundWinsOverOpenStreams() {
        let message = [UInt8](repeating: 0x61, count: 1000)
        let size = eventSize(messageBytes: 1000)
        let (registry, sinks) = makeRegistry(memory: 2 * size + size / 2)
        let before = registry.issueID()
        _ = registry.openStream(A, loop: 0, lastEventID: nil)
        let a = registry.route(message, to: A)
        #expect(a.streams == 1)
        _ = registry.route(message, to: B)
        _ = registry.route(message, to: C)
        #expect(registry.historyBytes <= 2 * size + size / 2)
        // A keeps its stream (and live delivery), not its history.
        #expect(registry.pairCount == 3)
        let resumed = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(resumed.replay.isEmpty)
        #expect(resumed.gap)
        _ = registry.route(message, to: A)
        #expect(sinks[0].delivered.count == 2)
    }

    /// A pair loses its history to the memory bound while its stream is open (the bound wins
    /// over streams), then that stream closes, which drops the now empty pair. A client that
    /// resumes from before the evicted event must still be told that it missed something.
    @Test func historyEvictedUnderAnOpenStreamStillGapsAfterTheStreamCloses() {
        let message = [UInt8](repeating: 0x61, count: 1000)
        let size = eventSize(messageBytes: 1000)
        let (registry, _) = makeRegistry(memory: size + size / 2)
        let before = registry.issueID()
        _ = registry.openStream(A, loop: 0, lastEventID: nil)
        let lost = registry.route(message, to: A)
        _ = registry.route(message, to: B)    // over the bound: A, least recently used, loses its history
        #expect(registry.historyBytes == size)
        #expect(registry.openStream(A, loop: 0, lastEventID: before).gap, "while the stream is still open")
        registry.closeStream(A, loop: 0)
        registry.closeStream(A, loop: 0)      // A has no stream and no history: dropped
        #expect(registry.pairCount == 1)
        let resumed = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(resumed.replay.isEmpty)
        #expect(resumed.gap, "event \(String(lost.id, radix: 16)) left the history, yet no gap is announced")
    }

    @Test func historyBytesIncludeEachPairsBookkeeping() {
        let (registry, _) = makeRegistry()
        let before = registry.issueID()
        _ = registry.route(bytes("x"), to: A)
        let event = registry.openStream(A, loop: 0, lastEventID: before).replay[0]
        let onePair = registry.historyBytes
        // The pair's slot alone is about 100 bytes, its key and history storage are
        // allocations of their own: a one-byte message costs far more than its event.
        #expect(onePair >= event.size + 200)
        #expect(onePair <= event.size + 500)
        // A second event of the same pair adds its own cost, not the pair's again.
        _ = registry.route(bytes("y"), to: A)
        #expect(registry.historyBytes - onePair < onePair / 2)
        #expect(registry.historyBytes - onePair >= event.size)
        // The key is counted: a 1000-byte peer costs about 1000 bytes more.
        let longKey = eventSize(messageBytes: 1, pair: PairKey(peer: String(repeating: "p", count: 1000), checksum: "a1"))
        let shortKey = eventSize(messageBytes: 1)
        #expect(longKey - shortKey >= 1000 && longKey - shortKey <= 1100)
        // A pair with only a stream holds no history and is charged nothing (open
        // connections bound those).
        let withHistory = registry.historyBytes
        _ = registry.openStream(B, loop: 0, lastEventID: nil)
        _ = registry.openStream(C, loop: 0, lastEventID: nil)
        #expect(registry.historyBytes == withHistory)
        #expect(registry.pairCount == 3)
        // Dropped pairs give everything back.
        registry.closeStream(B, loop: 0)
        registry.closeStream(C, loop: 0)
        registry.closeStream(A, loop: 0)
        registry.expireHistories(now: farFuture)
        #expect(registry.pairCount == 0)
        #expect(registry.historyBytes == 0)
    }

    /// The hostile case: many one-byte messages, each to a pair of its own, with no stream.
    /// Event bytes alone would let 64 KiB hold some 2,400 of them; bookkeeping included,
    /// far fewer are kept, and the newest survive.
    @Test func manyTinyPairsAreEvictedUnderASmallBound() {
        let bound = 64 << 10
        let (registry, _) = makeRegistry(memory: bound)
        let before = registry.issueID()
        let pairs = (0..<10_000).map { PairKey(peer: "peer\($0)", checksum: "c") }
        var ids: [UInt64] = []
        for pair in pairs {
            ids.append(registry.route(bytes("x"), to: pair).id)
            #expect(registry.historyBytes <= bound)
        }
        let perPair = eventSize(messageBytes: 1, pair: pairs[9_999])
        #expect(perPair > 150)
        // A sixteenth of the bound is kept for the records of dropped pairs.
        let histories = bound - bound / 16
        #expect(registry.pairCount == histories / perPair || registry.pairCount == histories / perPair - 1)
        #expect(registry.pairCount < 400)
        // The newest pairs keep their history; the oldest lost it and resume with a gap.
        let newest = registry.openStream(pairs[9_999], loop: 0, lastEventID: ids[9_999] - 1)
        #expect(newest.replay.map(\.id) == [ids[9_999]])
        #expect(!newest.gap)
        let oldest = registry.openStream(pairs[0], loop: 0, lastEventID: before)
        #expect(oldest.replay.isEmpty)
        #expect(oldest.gap)
        registry.closeStream(pairs[0], loop: 0)
        registry.closeStream(pairs[9_999], loop: 0)
        registry.expireHistories(now: farFuture)
        #expect(registry.pairCount == 0)
        #expect(registry.historyBytes == 0)
    }

    @Test func aFullHistoryIsARingWhoseChargeStaysPut() {
        let (registry, _) = makeRegistry(events: 3)
        let before = registry.issueID()
        var ids = (0..<3).map { registry.route(bytes("m\($0)"), to: A).id }
        let full = registry.historyBytes
        for i in 3..<11 {
            ids.append(registry.route(bytes("m\(i % 10)"), to: A).id)
            #expect(registry.historyBytes == full, "same-size events replace each other")
        }
        let start = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(start.replay.map(\.id) == Array(ids.suffix(3)))
        #expect(start.gap)
        #expect(registry.openStream(A, loop: 0, lastEventID: ids[8]).replay.map(\.id) == [ids[9], ids[10]])
    }

    @Test func aStreamKeepsAnIdlePairFromExpiringUntilItCloses() {
        let (registry, _) = makeRegistry(ttlSeconds: 10)
        _ = registry.route(bytes("a"), to: A)
        _ = registry.route(bytes("b"), to: B)
        _ = registry.openStream(A, loop: 0, lastEventID: nil)
        registry.expireHistories(now: farFuture)
        #expect(registry.pairCount == 1, "B expired, A has a stream")
        let closed = Clock.monotonicNanoseconds()
        registry.closeStream(A, loop: 0)
        registry.expireHistories(now: closed + 5_000_000_000)
        #expect(registry.pairCount == 1, "the TTL runs from the close")
        registry.expireHistories(now: farFuture)
        #expect(registry.pairCount == 0)
        #expect(registry.historyBytes == 0)
    }

    @Test func aSingleEventOverTheBoundIsNotKept() {
        let (registry, _) = makeRegistry(memory: 100)
        _ = registry.route([UInt8](repeating: 0x61, count: 500), to: A)
        #expect(registry.historyBytes <= 100)
    }

    // MARK: TTL

    @Test func expiryDropsIdlePairsButNotPairsWithStreams() {
        let (registry, _) = makeRegistry(ttlSeconds: 1)
        _ = registry.route(bytes("a"), to: A)
        _ = registry.route(bytes("b"), to: B)
        _ = registry.openStream(B, loop: 0, lastEventID: nil)
        _ = registry.openStream(C, loop: 0, lastEventID: nil)
        #expect(registry.pairCount == 3)

        // Not yet due.
        registry.expireHistories(now: Clock.monotonicNanoseconds())
        #expect(registry.pairCount == 3)

        registry.expireHistories(now: Clock.monotonicNanoseconds() + 100_000_000_000)
        #expect(registry.pairCount == 2, "A expires; B and C have streams")

        // B's history outlives its stream by the TTL, then goes.
        registry.closeStream(B, loop: 0)
        #expect(registry.pairCount == 2)
        registry.expireHistories(now: Clock.monotonicNanoseconds())
        #expect(registry.pairCount == 2)
        registry.expireHistories(now: farFuture)
        #expect(registry.pairCount == 1)
        // C never had a message: closing its last stream drops it at once.
        registry.closeStream(C, loop: 0)
        #expect(registry.pairCount == 0)
        #expect(registry.historyBytes == 0)
    }

    @Test func aMessageExtendsTheTTL() {
        let (registry, _) = makeRegistry(ttlSeconds: 10)
        let t0 = Clock.monotonicNanoseconds()
        _ = registry.route(bytes("a"), to: A)
        #expect(registry.pairCount == 1)
        registry.expireHistories(now: t0 + 5_000_000_000)
        #expect(registry.pairCount == 1)
        registry.expireHistories(now: farFuture)
        #expect(registry.pairCount == 0)
        #expect(registry.historyBytes == 0)
    }

    @Test func aDroppedPairGivesNoGapToAnotherPairThatLostNothing() {
        let (registry, _) = makeRegistry(ttlSeconds: 1)
        let before = registry.issueID()
        _ = registry.route(bytes("a"), to: A)
        registry.expireHistories(now: farFuture)
        // B never had an event: a client of B resuming from `before` missed nothing.
        let other = registry.openStream(B, loop: 0, lastEventID: before)
        #expect(!other.gap, "another pair's dropped history must not give B a gap")
        // A, made again, did lose "a".
        let again = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(again.gap)
    }

    @Test func lostRecordsFoldTheOldestWhenFull() {
        var records = LostRecords(capacity: 2)
        records.record(hash: 1, lostUpTo: 10)
        records.record(hash: 2, lostUpTo: 20)
        records.record(hash: 2, lostUpTo: 15)
        #expect(records.lostUpTo(hash: 2) == 20 && records.lostUpTo(hash: 3) == 0)
        records.record(hash: 3, lostUpTo: 30)
        #expect(records.foldedUpTo == 10, "the oldest record folds into one id for all")
        #expect(records.lostUpTo(hash: 1) == 10 && records.lostUpTo(hash: 4) == 10 && records.lostUpTo(hash: 3) == 30)
    }

    @Test func expiredPairResumesWithAGap() {
        let (registry, _) = makeRegistry(ttlSeconds: 1)
        let before = registry.issueID()
        _ = registry.route(bytes("a"), to: A)
        registry.expireHistories(now: farFuture)
        #expect(registry.pairCount == 0)
        let start = registry.openStream(A, loop: 0, lastEventID: before)
        #expect(start.replay.isEmpty)
        #expect(start.gap)
    }

    // MARK: Ids

    @Test func idsAreStrictlyIncreasingAndNotBelowTheClock() {
        let (registry, sinks) = makeRegistry(loops: 1)
        var ids: [UInt64] = []
        for i in 0..<2000 {
            let wall = Clock.wallMicroseconds()
            let id: UInt64
            switch i % 4 {
            case 0: id = registry.issueID()
            case 1: id = registry.route(bytes("m"), to: i % 8 == 1 ? A : B).id
            case 2: id = registry.openStream(A, loop: 0, lastEventID: nil).tickID
            default:
                registry.storeHerald(type: "100", message: bytes("x"))
                id = sinks[0].broadcasted.last!.last!.id
            }
            #expect(id >= wall)
            ids.append(id)
        }
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 })
        #expect(ids[0] >= registry.firstID)
    }

    // MARK: Sinks

    @Test func aBatchIsRoutedInOrderWithOneHandOffPerLoop() {
        let (registry, sinks) = makeRegistry(loops: 2)
        let onA = registry.openStream(A, loop: 0, lastEventID: nil)
        let onB = registry.openStream(B, loop: 1, lastEventID: nil)
        let buffer = bytes("alicea1bobb1carolc1")
        let messages = [(0, 5, 7), (7, 10, 12), (12, 17, 19), (0, 5, 7)].enumerated().map { n, cut in
            IngestMessage(peer: buffer[cut.0..<cut.1], checksum: buffer[cut.1..<cut.2], message: bytes("m\(n)")[...])
        }
        var routed: [(Int, Registry.Routed)] = []
        registry.route(messages) { routed.append(($0, $1)) }

        #expect(routed.map(\.0) == [0, 1, 2, 3])
        #expect(routed.map(\.1.streams) == [1, 1, 0, 1])
        #expect(zip(routed, routed.dropFirst()).allSatisfy { $0.1.id < $1.1.id })
        #expect(sinks[0].handOffs.withLock { $0 } == 1)
        #expect(sinks[1].handOffs.withLock { $0 } == 1)
        #expect(sinks[0].delivered.map { text($0.body) } == ["data: m0\n\n", "data: m3\n\n"])
        #expect(sinks[0].delivered.allSatisfy { $0.slot == onA.slot })
        #expect(sinks[1].delivered.map(\.slot) == [onB.slot])
        // Every message is in its pair's history, C's included (it has no stream).
        #expect(registry.pairCount == 3)
        let replay = registry.openStream(C, loop: 0, lastEventID: registry.firstID)
        #expect(replay.replay.map { text($0.body) } == ["data: m2\n\n"])
    }

    @Test func eventsGoOnlyToLoopsWithStreamsOfThePair() {
        let (registry, sinks) = makeRegistry(loops: 3)
        let sameCheckDifferentPeer = PairKey(peer: "mallory", checksum: "a1")
        let samePeerDifferentCheck = PairKey(peer: "alice", checksum: "zz")
        let streamOfA = registry.openStream(A, loop: 0, lastEventID: nil)
        _ = registry.openStream(A, loop: 2, lastEventID: nil)
        _ = registry.openStream(A, loop: 2, lastEventID: nil)
        let streamOfOther = registry.openStream(samePeerDifferentCheck, loop: 1, lastEventID: nil)
        #expect(streamOfA.slot != streamOfOther.slot)

        let first = registry.route(bytes("one"), to: A)
        #expect(first.streams == 3)
        #expect(sinks[0].deliveredIDs == [first.id])
        #expect(sinks[1].deliveredIDs == [])
        #expect(sinks[2].deliveredIDs == [first.id], "one hand-off per loop, however many streams it holds")
        #expect(sinks[0].delivered.first?.slot == streamOfA.slot)
        #expect(sinks[0].delivered.first.map { text($0.body) } == "data: one\n\n")

        let other = registry.route(bytes("two"), to: samePeerDifferentCheck)
        #expect(other.streams == 1)
        #expect(sinks[1].deliveredIDs == [other.id])

        let nobody = registry.route(bytes("three"), to: sameCheckDifferentPeer)
        #expect(nobody.streams == 0)

        registry.closeStream(A, loop: 0)
        let fourth = registry.route(bytes("four"), to: A)
        #expect(fourth.streams == 2)
        #expect(sinks[0].deliveredIDs == [first.id])
        #expect(sinks[1].deliveredIDs == [other.id])
        #expect(sinks[2].deliveredIDs == [first.id, fourth.id])

        registry.closeStream(A, loop: 2)
        registry.closeStream(A, loop: 2)
        _ = registry.route(bytes("five"), to: A)
        #expect(sinks[2].deliveredIDs == [first.id, fourth.id])
    }

    @Test func heraldsAreBroadcastToEveryLoopAndStartStreams() {
        let (registry, sinks) = makeRegistry(loops: 2)
        registry.storeHerald(type: "200", message: bytes("second"))
        registry.storeHerald(type: "100", message: bytes("first"))
        for sink in sinks {
            #expect(sink.broadcasted.map { $0.map { text($0.body) } } == [["data: 200second\n\n"], ["data: 100first\n\n"]])
        }
        #expect(registry.heralds().map(\.type) == ["100", "200"])

        let fresh = registry.openStream(A, loop: 0, lastEventID: nil)
        #expect(fresh.heralds.map { text($0.body) } == ["data: 100first\n\n", "data: 200second\n\n"])
        #expect(fresh.heralds.allSatisfy { $0.id > fresh.tickID })
        #expect(fresh.heralds[0].id < fresh.heralds[1].id)

        let resumed = registry.openStream(A, loop: 0, lastEventID: fresh.tickID)
        #expect(resumed.heralds.map(\.id) == [fresh.tickID, fresh.tickID])

        registry.removeHerald(type: "100")
        #expect(sinks[1].broadcasted.last.map { $0.map { text($0.body) } } == ["data: 100delete\n\n"])
        #expect(registry.heralds().map(\.type) == ["200"])

        registry.rebroadcastHeralds()
        #expect(sinks[0].broadcasted.last.map { $0.map { text($0.body) } } == ["data: 200second\n\n"])
    }

    // MARK: Concurrency

    /// 8 threads, each one loop, open and close streams and route 10,000 messages on
    /// overlapping pairs. Every loop must see its events in id order, and nothing may be
    /// left behind once every stream is closed.
    @Test(arguments: [0, 4])
    func concurrentStreamsAndRouting(eventsPerPair: Int) throws {
        let loops = 8, perThread = 1250
        let registry = Registry(limits: .init(eventsPerPair: eventsPerPair, ttlNanoseconds: 1_000_000_000, memoryBytes: 8 << 10),
                                loopCount: loops)
        let sinks = (0..<loops).map { _ in RecordingSink() }
        registry.attach(sinks)
        let pairs = (0..<6).map { PairKey(peer: "peer\($0 % 3)", checksum: "sum\($0 / 3)") }
        let routedIDs = Locked<[UInt64]>([])
        let opened = Locked<[Set<PairKey>]>(Array(repeating: [], count: loops))
        let done = DispatchSemaphore(value: 0)

        for loop in 0..<loops {
            let thread = Thread {
                var rng = SplitMix64(seed: UInt64(loop) &* 7919 &+ 1)
                var open: [PairKey] = []
                var mine: [UInt64] = []
                var everOpened = Set<PairKey>()
                for i in 0..<perThread {
                    if rng.next() % 3 == 0 {
                        let pair = pairs[Int(rng.next() % UInt64(pairs.count))]
                        let lastEventID: UInt64? = rng.next() % 2 == 0 ? nil : registry.firstID + rng.next() % 1000
                        _ = registry.openStream(pair, loop: loop, lastEventID: lastEventID)
                        open.append(pair)
                        everOpened.insert(pair)
                    }
                    let p = Int(rng.next() % UInt64(pairs.count))
                    // The data names the pair: sinks see only the registry's slot numbers.
                    mine.append(registry.route(Array("\(p)/\(loop)/\(i)".utf8), to: pairs[p]).id)
                    if !open.isEmpty && rng.next() % 3 == 0 {
                        registry.closeStream(open.remove(at: Int(rng.next() % UInt64(open.count))), loop: loop)
                    }
                }
                for pair in open { registry.closeStream(pair, loop: loop) }
                routedIDs.withLock { $0 += mine }
                opened.withLock { $0[loop] = everOpened }
                done.signal()
            }
            thread.start()
        }
        for _ in 0..<loops {
            #expect(done.wait(timeout: .now() + 30) == .success)
        }

        let ids = routedIDs.value
        #expect(ids.count == loops * perThread)
        #expect(Set(ids).count == ids.count, "ids are unique")
        let everOpened = opened.value
        func pairOf(_ delivery: RecordingSink.Delivery) -> PairKey {
            pairs[Int(text(delivery.body).dropFirst("data: ".count).prefix { $0 != "/" })!]
        }
        for (loop, sink) in sinks.enumerated() {
            let delivered = sink.delivered
            #expect(zip(delivered, delivered.dropFirst()).allSatisfy { $0.id < $1.id }, "loop \(loop) saw ids out of order")
            for pair in pairs {
                let perPair = delivered.filter { pairOf($0) == pair }.map(\.id)
                #expect(zip(perPair, perPair.dropFirst()).allSatisfy { $0 < $1 })
            }
            #expect(delivered.allSatisfy { everOpened[loop].contains(pairOf($0)) }, "loop \(loop) got events of a pair it never opened")
            #expect(Set(delivered.map(\.id)).isSubset(of: Set(ids)))
        }
        if eventsPerPair == 0 {
            #expect(registry.pairCount == 0)
            #expect(registry.historyBytes == 0)
        } else {
            #expect(registry.historyBytes <= 8 << 10)
            registry.expireHistories(now: farFuture)
            #expect(registry.pairCount == 0)
            #expect(registry.historyBytes == 0)
        }
    }
}
