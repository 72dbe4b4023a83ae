@testable import QriGateway
import Testing

/// Every transition of `ConnectionLifecycle`, timeouts included, with a mock clock.
@Suite struct ConnectionLifecycleTests {
    typealias L = ConnectionLifecycle
    static let durations = L.Durations(handshake: 10, header: 20, idle: 60, linger: 2)

    /// A mock monotonic clock in nanoseconds.
    struct MockClock {
        var now: UInt64 = 1_000
        mutating func advance(_ by: UInt64) { now += by }
    }

    func tls(_ clock: MockClock) -> L { L(tls: true, durations: Self.durations, now: clock.now) }

    func streaming(_ clock: MockClock, h2: Bool = false) -> L {
        var l = tls(clock)
        _ = l.handshakeCompleted(h2: h2, now: clock.now)
        _ = l.streamOpened()
        return l
    }

    @Test func tlsStartsHandshakingWithItsTimeoutArmed() {
        let clock = MockClock()
        let l = tls(clock)
        #expect(l.state == .handshaking)
        #expect(l.armed?.timeout == .handshake && l.armed?.deadline == clock.now + 10)
    }

    @Test func plainStartsReadingWithNoTimeout() {
        let l = L(tls: false, durations: Self.durations, now: 0)
        #expect(l.state == .readingHead && l.armed == nil)
    }

    @Test func handshakeCompletedArmsHeaderAndAttachesTheProtocol() {
        var clock = MockClock()
        var l = tls(clock)
        clock.advance(3)
        #expect(l.handshakeCompleted(h2: false, now: clock.now) == [.arm(.header, deadline: clock.now + 20), .attach(.http1)])
        #expect(l.state == .readingHead)
        var m = tls(clock)
        #expect(m.handshakeCompleted(h2: true, now: clock.now).last == .attach(.h2))
        // Only once.
        #expect(m.handshakeCompleted(h2: true, now: clock.now) == [])
    }

    @Test func handshakeTimeoutClosesAtItsDeadlineNotBefore() {
        var clock = MockClock()
        var l = tls(clock)
        clock.advance(9)
        #expect(l.timeoutFired(.handshake, now: clock.now) == [])
        clock.advance(1)
        #expect(l.timeoutFired(.handshake, now: clock.now) == [.close(timedOut: .handshake)])
        #expect(l.isClosed && l.armed == nil)
        #expect(l.timeoutFired(.handshake, now: clock.now) == [])
    }

    @Test func aStaleTimeoutDoesNothing() {
        var clock = MockClock()
        var l = tls(clock)
        _ = l.handshakeCompleted(h2: false, now: clock.now)
        clock.advance(100)
        #expect(l.timeoutFired(.handshake, now: clock.now) == [])
        #expect(l.timeoutFired(.idle, now: clock.now) == [])
        #expect(l.timeoutFired(.header, now: clock.now) == [.close(timedOut: .header)])
    }

    @Test func streamOpenedDisarmsOnceAndStreamingHasNoTimeout() {
        var clock = MockClock()
        var l = tls(clock)
        _ = l.handshakeCompleted(h2: true, now: clock.now)
        #expect(l.streamOpened() == [.disarm])
        #expect(l.streamOpened() == [])
        #expect(l.state == .streaming)
        clock.advance(1_000_000)
        for timeout in L.Timeout.allCases { #expect(l.timeoutFired(timeout, now: clock.now) == []) }
    }

    @Test func lastH2StreamClosedRearmsTheHeaderTimeout() {
        var clock = MockClock()
        var l = streaming(clock, h2: true)
        clock.advance(50)
        #expect(l.lastStreamClosed(now: clock.now) == [.arm(.header, deadline: clock.now + 20)])
        #expect(l.state == .readingHead)
        clock.advance(20)
        #expect(l.timeoutFired(.header, now: clock.now) == [.close(timedOut: .header)])
    }

    @Test func keepAliveAnswerGoesIdleAndTheNextRequestRearmsTheHeaderTimeout() {
        var clock = MockClock()
        var l = L(tls: false, durations: Self.durations, now: clock.now)
        #expect(l.answeredKeepingAlive(now: clock.now) == [.arm(.idle, deadline: clock.now + 60), .flush])
        #expect(l.state == .idle)
        clock.advance(30)
        #expect(l.requestBegan(now: clock.now) == [.arm(.header, deadline: clock.now + 20)])
        #expect(l.state == .readingHead)
        #expect(l.requestBegan(now: clock.now) == [])
    }

    @Test func idleTimeoutCloses() {
        var clock = MockClock()
        var l = L(tls: false, durations: Self.durations, now: clock.now)
        _ = l.answeredKeepingAlive(now: clock.now)
        clock.advance(60)
        #expect(l.timeoutFired(.idle, now: clock.now) == [.close(timedOut: .idle)])
    }

    @Test func closingAnswerWritesThenHalfClosesThenLingers() {
        var clock = MockClock()
        var l = tls(clock)
        _ = l.handshakeCompleted(h2: false, now: clock.now)
        #expect(l.answeredClosing(now: clock.now) == [.arm(.linger, deadline: clock.now + 2), .flush])
        #expect(l.state == .lingering(halfClosed: false))
        clock.advance(1)
        #expect(l.outputDrained(now: clock.now) == [.shutdownOutput, .arm(.linger, deadline: clock.now + 2)])
        #expect(l.state == .lingering(halfClosed: true))
        #expect(l.outputDrained(now: clock.now) == [])
        clock.advance(2)
        #expect(l.timeoutFired(.linger, now: clock.now) == [.close(timedOut: .linger)])
    }

    @Test func lingeringEndsWhenThePeerCloses() {
        let clock = MockClock()
        var l = tls(clock)
        _ = l.handshakeCompleted(h2: false, now: clock.now)
        _ = l.answeredClosing(now: clock.now)
        #expect(l.peerClosed() == [.close(timedOut: nil)])
        #expect(l.peerClosed() == [])
    }

    @Test func drainWritesThenSendsCloseNotifyThenCloses() {
        let clock = MockClock()
        var l = streaming(clock)
        #expect(l.drain() == [.disarm, .flush])
        #expect(l.state == .draining)
        #expect(l.drain() == [])
        #expect(l.outputDrained(now: clock.now) == [.shutdownOutput, .close(timedOut: nil)])
        #expect(l.isClosed)
    }

    @Test func drainDuringTheHandshakeClosesAtOnce() {
        var l = tls(MockClock())
        #expect(l.drain() == [.close(timedOut: nil)])
    }

    @Test func nothingHappensAfterClose() {
        let clock = MockClock()
        var l = streaming(clock)
        _ = l.peerClosed()
        #expect(l.streamOpened() == [])
        #expect(l.lastStreamClosed(now: clock.now) == [])
        #expect(l.answeredClosing(now: clock.now) == [])
        #expect(l.answeredKeepingAlive(now: clock.now) == [])
        #expect(l.outputDrained(now: clock.now) == [])
        #expect(l.drain() == [])
        #expect(l.handshakeCompleted(h2: false, now: clock.now) == [])
    }

    @Test func eventsOutOfTurnAreIgnored() {
        let clock = MockClock()
        var l = tls(clock)
        #expect(l.streamOpened() == [])
        #expect(l.answeredKeepingAlive(now: clock.now) == [])
        #expect(l.answeredClosing(now: clock.now) == [])
        #expect(l.outputDrained(now: clock.now) == [])
        #expect(l.requestBegan(now: clock.now) == [])
        #expect(l.state == .handshaking)
    }
}
