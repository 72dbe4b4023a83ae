import QriLoop
import QriTransport
import Testing

/// A transport whose peer takes `budget` bytes, then is full until given more: a client that
/// reads slowly, without a socket.
private final class ThrottledTransport: Transport {
    var budget = 0
    var received: [UInt8] = []
    let fd: Int32 = -1

    func handshake() -> IOResult { .done(0) }
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult { .wantRead }
    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        guard budget > 0 else { return .wantWrite }
        let n = min(budget, bytes.count)
        received += bytes[..<n]
        budget -= n
        return .done(n)
    }
    var hasBufferedInput: Bool { false }
    func shutdownOutput() {}
    func close() {}
}

@Suite struct OutputQueueTests {
    /// A reader that takes 98 % of what comes never lets the queue drain; what the queue holds
    /// must follow what is unsent, not everything ever written.
    @Test func aQueueThatNeverDrainsHoldsAboutWhatIsUnsent() {
        var queue = OutputQueue()
        let peer = ThrottledTransport()
        let event = [UInt8](repeating: 0x61, count: 10_000)
        var appended = 0
        for round in 0..<5_000 {
            queue.append(event)
            appended += event.count
            peer.budget = event.count * 98 / 100
            _ = queue.write(to: peer)
            let unsent = queue.pendingCount
            #expect(unsent == appended - peer.received.count)
            #expect(queue.heldCount <= unsent + max(64 << 10, unsent / 2) + event.count,
                    "round \(round): holds \(queue.heldCount) for \(unsent) unsent")
        }
        #expect(peer.received.count > 40_000_000)
    }

    @Test func bytesArriveInOrderAcrossCompactions() {
        var queue = OutputQueue()
        let peer = ThrottledTransport()
        var expected: [UInt8] = []
        var generator = UInt8(0)
        for _ in 0..<2_000 {
            let chunk = (0..<997).map { _ in generator &+= 1; return generator }
            expected += chunk
            queue.append(chunk)
            peer.budget = 700
            _ = queue.write(to: peer)
        }
        peer.budget = .max
        #expect(queue.write(to: peer) == .drained)
        #expect(peer.received == expected)
    }
}
