import DequeModule
import Logging
import QriHTTP
import QriLoop
import Synchronization

/// The gateway's share of one event loop: its listening sockets, its connections, the streams
/// it holds indexed by pair, their ticks, and the timeouts of its connections.
///
/// Threading: confined to its loop's thread. Other threads reach it only through
/// `deliver(_:to:)` (the registry, under its lock) and `loop.execute`, which queue work.
final class LoopWorker: EventSink, @unchecked Sendable {
    private enum Delivery {
        case pairs([PairDelivery])
        case everyStream([EncodedEvent])
    }

    /// What the registry handed in and this loop has not drained yet.
    private struct Inbox {
        var deliveries: [Delivery] = []
        /// Events in `deliveries`: the loop's backlog.
        var events = 0
    }

    enum TimeoutKind: Int, CaseIterable { case handshake, header, idle, linger, frame }

    let loop: EventLoop
    let gateway: GatewayCore
    let admin: AdminAPI
    var index: Int { loop.index }

    /// One read buffer for every connection of this loop: connections keep only what they
    /// have not consumed.
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)

    private var acceptors: [Acceptor] = []
    /// Open connections by serial number. The only strong reference a loop keeps to them.
    private var connections: [UInt64: Connection] = [:]
    private var nextSerial: UInt64 = 0
    /// Closes since the heap was last trimmed (see `trimHeapAfterChurn`).
    private var closedSinceTrim = 0
    /// What accept(2) borrows when the process is out of descriptors.
    let spareDescriptor = SpareDescriptor()
    /// This loop's streams by the registry's slot number of their pair.
    private var streamsBySlot: [[any EventStream]] = []
    /// Events the registry handed to this loop, drained once per pass: one cross-thread
    /// hand-off per batch rather than per event.
    private let inbox = Mutex(Inbox())
    private var drained = Inbox()
    /// Ingest connections waiting for the loops to catch up.
    private var pausedIngest: [IngestConnection] = []
    private var flushQueue = Deque<Connection>()
    /// One queue per kind, in deadline order; entries name connections by serial, so a
    /// connection that closes is not kept alive by a deadline it no longer has.
    private var timeouts: [Deque<(serial: UInt64, deadline: UInt64)>] =
        Array(repeating: Deque(), count: TimeoutKind.allCases.count)
    private(set) var streamCount = 0
    /// This loop's part of the cluster; nil on a node on its own.
    var clusterLoop: ClusterLoop?

    init(loop: EventLoop, gateway: GatewayCore, admin: AdminAPI) {
        self.loop = loop
        self.gateway = gateway
        self.admin = admin
        let interval = gateway.configuration.tickInterval.nanoseconds
        tickSlices = Int(max(interval / Self.tickSlicePeriod, 1))
        loop.beforeSleep { [unowned self] in self.flushAll() }
        loop.every(nanoseconds: 100_000_000) { [unowned self] in
            self.expireTimeouts()
            self.resumePausedAcceptors()
        }
        loop.every(nanoseconds: 5_000_000) { [unowned self] in self.resumeIngestIfDrained() }
        loop.every(nanoseconds: 25_000_000) { [unowned self] in self.releaseSilentHandshakeSlots() }
        // Each stream still gets one Tick per interval, but the streams of a loop are ticked
        // in slices, one every 100 ms, so that no pass writes to many of them at once (a
        // write costs ~10 µs: 10,000 streams in 16 slices stalled the loop ~8 ms per slice).
        loop.every(nanoseconds: interval / UInt64(tickSlices)) { [unowned self] in
            self.tick()
        }
        loop.every(nanoseconds: 1_000_000_000) { [unowned self] in self.trimHeapAfterChurn() }
        if index == 0 {
            loop.every(nanoseconds: 1_000_000_000) { [unowned self] in self.gateway.registry.expireHistories() }
            loop.every(nanoseconds: gateway.configuration.heraldInterval.nanoseconds) { [unowned self] in
                self.gateway.registry.rebroadcastHeralds()
            }
        }
    }

    deinit { readBuffer.deallocate() }

    // MARK: Listening

    func listen(on socket: ListeningSocket, kind: GatewayMetrics.Listener) throws(SystemError) {
        let acceptor = Acceptor(socket: socket, kind: kind, worker: self)
        try loop.register(fd: socket.fd, interest: .readable, handler: acceptor)
        acceptors.append(acceptor)
    }

    func accepted(_ socket: AcceptedSocket, kind: GatewayMetrics.Listener) {
        let fd = socket.fd
        guard gateway.admitConnection(kind) else {
            reject(fd: fd, limitReason(kind))
            PlainTransport(fd: fd).close()
            return
        }
        // One address may not take every public connection: over its cap, accepted and
        // closed at once, like the global cap.
        let countedPeer = kind == .public && gateway.perAddress.limit > 0 ? socket.peer : nil
        guard gateway.perAddress.admit(countedPeer) else {
            gateway.releaseConnection(kind)
            reject(fd: fd, .perIP)
            PlainTransport(fd: fd).close()
            return
        }
        let connection: Connection
        switch kind {
        case .public:
            // HTTP/2 carries a node's own streams; a cluster's streams (held events, positions
            // from Redis) stay on HTTP/1.1 for now, so ALPN offers h2 only on a node on its own.
            connection = StreamConnection(worker: self, transport: gateway.tlsContext.makeConnection(
                fd: fd, offeringH2: clusterLoop == nil))
        case .ingest:
            ConnectedSocket.enableKeepAlive(fd)
            connection = IngestConnection(worker: self, transport: PlainTransport(fd: fd))
        case .admin:
            ConnectedSocket.enableKeepAlive(fd)
            if gateway.configuration.adminPlaintext {
                connection = AdminConnection(worker: self, transport: PlainTransport(fd: fd), tls: false)
            } else {
                connection = AdminConnection(worker: self, transport: gateway.tlsContext.makeConnection(fd: fd), tls: true)
            }
        }
        do {
            try loop.register(fd: fd, interest: .readable, handler: connection)
        } catch {
            gateway.releaseConnection(kind)
            gateway.perAddress.release(countedPeer)
            connection.transport.close()
            return
        }
        connection.countedPeer = countedPeer
        nextSerial += 1
        connection.serial = nextSerial
        connections[nextSerial] = connection
        gateway.metrics.connectionOpened(kind)
        if kind == .public { handshakeStarted(connection) }
        connection.start()
    }

    // MARK: Handshake admission

    /// Public connections accepted whose TLS handshake has not ended (MAX_HANDSHAKES).
    private(set) var handshakesInProgress = 0
    private var handshakesPeak = 0
    /// Whether the public listeners of this loop are unwatched because MAX_HANDSHAKES
    /// handshakes are in progress: new connections wait in the kernel's accept queue (the
    /// backlog is sized for a storm), costing this loop nothing until a slot frees.
    private var acceptingPausedForHandshakes = false

    /// How many more public connections this loop may accept now.
    var handshakeSlotsLeft: Int { max(gateway.configuration.maxHandshakes - handshakesInProgress, 0) }

    /// Connections that took a slot at accept, in accept order, until their client speaks.
    private var silentSinceAccept = Deque<(serial: UInt64, acceptedAt: UInt64)>()
    /// How long a connection may hold a slot without sending its ClientHello. A client sends
    /// it with the last packet of the TCP handshake, so a storm's clients all have theirs
    /// waiting; a connection that stays silent is no handshake to pace, and must not keep the
    /// listener unwatched until HANDSHAKE_TIMEOUT (it takes a slot again when it speaks).
    private static let silentSlotGrace: UInt64 = 50_000_000

    private func handshakeStarted(_ connection: Connection, atAccept: Bool = true) {
        if atAccept { silentSinceAccept.append((connection.serial, Clock.monotonicNanoseconds())) }
        connection.holdsHandshakeSlot = true
        handshakesInProgress += 1
        gateway.metrics.handshakesInProgress.increment()
        if handshakesInProgress > handshakesPeak {
            handshakesPeak = handshakesInProgress
            gateway.recordHandshakePeak(handshakesPeak)
        }
        if handshakesInProgress >= gateway.configuration.maxHandshakes && !acceptingPausedForHandshakes {
            acceptingPausedForHandshakes = true
            gateway.metrics.acceptPausesForHandshakes.increment()
            for acceptor in acceptors where acceptor.kind == .public { updateWatch(acceptor) }
        }
    }

    /// Called when a connection's handshake completes, fails, or the connection closes.
    func handshakeEnded(_ connection: Connection) {
        guard connection.holdsHandshakeSlot else { return }
        connection.holdsHandshakeSlot = false
        handshakesInProgress -= 1
        gateway.metrics.handshakesInProgress.decrement()
        // Connections that already spoke go before new ones from the accept queue.
        while handshakesInProgress < gateway.configuration.maxHandshakes, let serial = waitingForSlot.popFirst() {
            guard let waiting = connections[serial], !waiting.isClosed, !waiting.holdsHandshakeSlot else { continue }
            handshakeStarted(waiting, atAccept: false)
            loop.setInterest(fd: waiting.transport.fd, .readable)
        }
        if acceptingPausedForHandshakes && handshakesInProgress < gateway.configuration.maxHandshakes {
            acceptingPausedForHandshakes = false
            for acceptor in acceptors where acceptor.kind == .public { updateWatch(acceptor) }
        }
    }

    /// Connections that gave up their slot while silent, then spoke when none was free:
    /// unwatched until one frees, first come first served.
    private var waitingForSlot = Deque<UInt64>()

    /// A connection's client sent its first bytes. Returns whether its handshake may go on:
    /// one that gave up its slot while silent needs a slot again, and waits for one.
    func clientSpoke(_ connection: Connection) -> Bool {
        guard !connection.holdsHandshakeSlot, connection.listener == .public else { return true }
        if handshakesInProgress < gateway.configuration.maxHandshakes {
            handshakeStarted(connection, atAccept: false)
            return true
        }
        waitingForSlot.append(connection.serial)
        loop.setInterest(fd: connection.transport.fd, .none)
        return false
    }

    private func releaseSilentHandshakeSlots() {
        guard !silentSinceAccept.isEmpty else { return }
        let now = Clock.monotonicNanoseconds()
        while let first = silentSinceAccept.first, first.acceptedAt + Self.silentSlotGrace <= now {
            silentSinceAccept.removeFirst()
            if let connection = connections[first.serial], !connection.clientSpoke {
                handshakeEnded(connection)
            }
        }
    }

    /// Watches `acceptor`'s socket unless it is paused (handshakes, descriptor back-off, drain).
    private func updateWatch(_ acceptor: Acceptor) {
        let paused = acceptor.backedOff || (acceptor.kind == .public && acceptingPausedForHandshakes)
        loop.setInterest(fd: acceptor.socket.fd, paused ? .none : .readable)
    }

    /// Counts a connection closed by a limit and says so (rate-limited) with its peer.
    func reject(fd: Int32, _ reason: GatewayMetrics.RejectReason) {
        gateway.metrics.rejected(reason)
        gateway.warnings.warning(.rejected, "connection rejected") {
            ["reason": "\(reason.rawValue)", "peer": "\(ConnectedSocket.peerName(of: fd) ?? "?")"]
        }
    }

    /// Called by a connection as it closes.
    func forget(_ connection: Connection) {
        if connections.removeValue(forKey: connection.serial) != nil {
            gateway.releaseConnection(connection.listener)
            gateway.perAddress.release(connection.countedPeer)
            gateway.metrics.connectionClosed(connection.listener)
            closedSinceTrim += 1
        }
    }

    /// After a flood of connections has come and gone, gives the allocator's free pages back
    /// to the system: glibc keeps them otherwise, and RSS stays at the flood's peak.
    private func trimHeapAfterChurn() {
        guard closedSinceTrim >= Self.closesWorthATrim else { return }
        closedSinceTrim = 0
        releaseFreeHeapMemory()
    }

    private static let closesWorthATrim = 1000

    // MARK: Accept back-off

    private var pausedAcceptors: [(acceptor: Acceptor, until: UInt64)] = []

    /// The process is out of descriptors: refuse what waits at the head of the listener
    /// (with the spare descriptor) and stop watching it for a short while, instead of being
    /// woken for it again at once.
    func backOff(_ acceptor: Acceptor, error: SystemError) {
        var refused = 0
        while refused < Self.refusalsPerBackOff, spareDescriptor.refuseOne(from: acceptor.socket) { refused += 1 }
        for _ in 0..<refused { gateway.metrics.rejected(limitReason(acceptor.kind)) }
        gateway.warnings.warning(.acceptFailed, "accept failed; backing off") {
            ["listener": "\(acceptor.kind.rawValue)", "error": "\(error)", "refused": "\(refused)"]
        }
        acceptor.backedOff = true
        updateWatch(acceptor)
        pausedAcceptors.append((acceptor, Clock.monotonicNanoseconds() + Self.acceptBackOff))
    }

    private func limitReason(_ kind: GatewayMetrics.Listener) -> GatewayMetrics.RejectReason {
        switch kind {
        case .public: return .maxConnections
        case .admin: return .maxAdminConnections
        case .ingest: return .maxIngestConnections
        }
    }

    private func resumePausedAcceptors() {
        guard !pausedAcceptors.isEmpty else { return }
        let now = Clock.monotonicNanoseconds()
        pausedAcceptors.removeAll { paused in
            guard paused.until <= now else { return false }
            paused.acceptor.backedOff = false
            if acceptors.contains(where: { $0 === paused.acceptor }) { updateWatch(paused.acceptor) }
            return true
        }
    }

    private static let acceptBackOff: UInt64 = 100_000_000
    private static let refusalsPerBackOff = 64

    // MARK: Output

    func needsFlush(_ connection: Connection) {
        flushQueue.append(connection)
    }

    /// Writes the queued output of connections, a bounded number per pass: a broadcast to
    /// every stream is written over several passes, so that accepts, reads and other loops'
    /// hand-offs are served in between instead of after one long stall.
    /// Handshake work done in this loop pass (monotonic ns), reset before each sleep.
    private var handshakeNanosThisPass: UInt64 = 0
    /// At most this much of a pass goes to TLS handshakes (a fresh one costs ~0.4 ms of
    /// CPU): events reach open streams within a few milliseconds during a reconnect storm.
    private static let handshakeNanosPerPass: UInt64 = 2_000_000

    var handshakeTimeLeft: Bool { handshakeNanosThisPass < Self.handshakeNanosPerPass }

    func spentOnHandshakes(_ nanoseconds: UInt64) {
        handshakeNanosThisPass += nanoseconds
    }

    private func flushAll() {
        handshakeNanosThisPass = 0
        var budget = Self.flushesPerPass
        while budget > 0, let connection = flushQueue.popFirst() {
            connection.queuedForFlush = false
            connection.flush()
            budget -= 1
        }
        // Keeps the loop from sleeping while output is still queued.
        if !flushQueue.isEmpty { loop.execute {} }
    }

    private static let flushesPerPass = 2048

    // MARK: Streams

    func addStream(_ stream: any EventStream) {
        if stream.slot >= streamsBySlot.count {
            streamsBySlot.append(contentsOf: repeatElement([], count: stream.slot + 1 - streamsBySlot.count))
        }
        streamsBySlot[stream.slot].append(stream)
        streamCount += 1
        gateway.metrics.streamOpened(stream.streamProtocol)
    }

    /// The open stream with this serial number, if it is still open.
    func stream(serial: UInt64) -> StreamConnection? {
        connections[serial] as? StreamConnection
    }

    /// Every HTTP/1.1 stream of this loop (the cluster's: see `accepted`).
    func streams() -> [StreamConnection] {
        streamsBySlot.flatMap { $0 }.compactMap { $0 as? StreamConnection }
    }

    func removeStream(_ stream: any EventStream) {
        guard stream.slot < streamsBySlot.count,
              let i = streamsBySlot[stream.slot].firstIndex(where: { $0 === stream }) else { return }
        streamsBySlot[stream.slot].remove(at: i)
        streamCount -= 1
        gateway.metrics.streamClosed(stream.streamProtocol)
    }

    /// The registry hands events for pairs to this loop. Runs on the routing thread, under
    /// the registry's lock.
    func deliver(_ deliveries: [PairDelivery]) {
        hand(.pairs(deliveries), events: deliveries.count)
    }

    /// The registry hands stored-message events for every stream. Runs on the routing thread.
    func broadcast(_ events: [EncodedEvent]) {
        hand(.everyStream(events), events: events.count)
    }

    private func hand(_ delivery: Delivery, events: Int) {
        let first = inbox.withLock { inbox in
            inbox.deliveries.append(delivery)
            inbox.events += events
            return inbox.deliveries.count == 1
        }
        if first { loop.execute { [self] in drainInbox() } }
    }

    /// Events handed in and not yet drained. Any thread.
    var backlog: Int { inbox.withLock { $0.events } }

    func resumeWhenDrained(_ connection: IngestConnection) {
        pausedIngest.append(connection)
    }

    private func resumeIngestIfDrained() {
        guard !pausedIngest.isEmpty, !gateway.deliveryBacklogged(), !(clusterLoop?.isBacklogged ?? false) else { return }
        let waiting = pausedIngest
        pausedIngest = []
        for connection in waiting {
            if connection.mayResume {
                connection.resumeReading()
            } else {
                pausedIngest.append(connection)
            }
        }
    }

    private func drainInbox() {
        inbox.withLock { swap(&$0, &drained) }
        var messages = 0
        for delivery in drained.deliveries {
            switch delivery {
            case .pairs(let deliveries):
                for delivery in deliveries where delivery.slot < streamsBySlot.count {
                    for stream in streamsBySlot[delivery.slot] where stream.sendLive(delivery.event) { messages += 1 }
                }
            case .everyStream(let events):
                for event in events { sendToAll(event, kind: .herald) }
            }
        }
        drained.deliveries.removeAll(keepingCapacity: true)
        drained.events = 0
        gateway.metrics.delivered(.message, count: messages)
    }

    /// Sends every stream of this loop the same event (ticks and broadcasts): one pass over
    /// the loop's own streams, no lock.
    private func sendToAll(_ event: EncodedEvent, kind: GatewayMetrics.EventKind) {
        var count = 0
        let atPosition = clusterLoop != nil
        for streams in streamsBySlot {
            for stream in streams where atPosition ? stream.sendAtPosition(event.body) : stream.sendLive(event) { count += 1 }
        }
        gateway.metrics.delivered(kind, count: count)
    }

    private static let tickSlicePeriod: UInt64 = 100_000_000
    private let tickSlices: Int
    private var tickSlice = 0

    /// Ticks the streams whose pair slot falls in the next slice: a slot is stable while its
    /// stream is open, so every stream is ticked once per interval.
    private func tick() {
        tickSlice = (tickSlice + 1) % tickSlices
        guard streamCount > 0 else { return }
        if clusterLoop != nil {
            // Each stream's Tick carries the id that stream is at.
            let body = gateway.tickEvent(id: 0).body
            var count = 0
            for slot in stride(from: tickSlice, to: streamsBySlot.count, by: tickSlices) {
                for stream in streamsBySlot[slot] where stream.sendAtPosition(body) { count += 1 }
            }
            gateway.metrics.delivered(.tick, count: count)
            return
        }
        let id = gateway.registry.issueID()
        // Events routed before this id must reach the streams before the tick does, or a
        // client resuming from the tick's id would miss them.
        loop.runQueuedTasks()
        let event = gateway.tickEvent(id: id)
        var count = 0
        for slot in stride(from: tickSlice, to: streamsBySlot.count, by: tickSlices) {
            let streams = streamsBySlot[slot]
            for stream in streams where stream.sendLive(event) { count += 1 }
        }
        gateway.metrics.delivered(.tick, count: count)
    }

    // MARK: Timeouts

    /// Arms `connection`'s timeout of `kind`, replacing any armed one.
    func arm(_ connection: Connection, _ kind: TimeoutKind) {
        let deadline = Clock.monotonicNanoseconds() + gateway.timeout(kind)
        connection.deadline = deadline
        connection.timeoutKind = kind
        // Durations are fixed per kind, so each queue stays in deadline order.
        timeouts[kind.rawValue].append((connection.serial, deadline))
    }

    func disarm(_ connection: Connection) {
        connection.deadline = 0
    }

    private func expireTimeouts() {
        let now = Clock.monotonicNanoseconds()
        for kind in TimeoutKind.allCases {
            while let first = timeouts[kind.rawValue].first, first.deadline <= now {
                timeouts[kind.rawValue].removeFirst()
                guard let connection = connections[first.serial], !connection.isClosed,
                      connection.deadline == first.deadline, connection.timeoutKind == kind else { continue }
                connection.deadline = 0
                switch kind {
                case .handshake: reject(fd: connection.transport.fd, .handshakeTimeout)
                case .header: reject(fd: connection.transport.fd, .headerTimeout)
                case .idle: reject(fd: connection.transport.fd, .idleTimeout)
                case .frame: reject(fd: connection.transport.fd, .frameTimeout)
                case .linger: break
                }
                connection.didTimeOut()
            }
        }
    }

    // MARK: Drain

    /// The streams a drain closes, in order, and when it started (monotonic ns).
    private var drainQueue: [StreamConnection] = []
    private var drainClosed = 0
    private var drainStart: UInt64 = 0
    private var drainNanoseconds: UInt64 = 0

    /// Stops accepting on the public listener and closes this loop's streams one after the
    /// other, evenly spread over `seconds` (the first at once, the last at (n-1)/n of it).
    /// Public connections that are not streams yet are closed at once; admin and ingest go on.
    func startDraining(seconds: Double) {
        for acceptor in acceptors where acceptor.kind == .public {
            loop.unregister(fd: acceptor.socket.fd)
            acceptor.socket.close()
        }
        acceptors.removeAll { $0.kind == .public }
        var streams: [StreamConnection] = []
        for serial in connections.keys.sorted() {
            guard let connection = connections[serial], connection.listener == .public else { continue }
            if let stream = connection as? StreamConnection, stream.isStreaming {
                streams.append(stream)
            } else {
                connection.closeGracefully()
            }
        }
        drainQueue = streams
        drainClosed = 0
        drainStart = Clock.monotonicNanoseconds()
        drainNanoseconds = max(seconds.nanoseconds, 1)
        closeDueStreams()
        loop.every(nanoseconds: 10_000_000) { [unowned self] in self.closeDueStreams() }
    }

    private func closeDueStreams() {
        guard drainClosed < drainQueue.count else { return }
        let elapsed = Clock.monotonicNanoseconds() - drainStart
        let total = UInt64(drainQueue.count)
        let due = min(Int(elapsed.multipliedFullWidth(by: total).low / drainNanoseconds) + 1, drainQueue.count)
        while drainClosed < due {
            drainQueue[drainClosed].closeGracefully()
            drainClosed += 1
        }
        if drainClosed == drainQueue.count { drainQueue = [] ; drainClosed = 0 }
    }

    // MARK: Shutdown

    /// Stops accepting and closes every connection in order (TLS close_notify).
    func shutdown() {
        for acceptor in acceptors {
            loop.unregister(fd: acceptor.socket.fd)
            acceptor.socket.close()
        }
        acceptors = []
        for connection in Array(connections.values) {
            connection.closeGracefully()
        }
    }
}

/// Accepts connections from one listening socket for its loop.
final class Acceptor: ReadinessHandler {
    let socket: ListeningSocket
    let kind: GatewayMetrics.Listener
    unowned let worker: LoopWorker
    /// Unwatched for a short while after accept(2) failed for want of descriptors.
    var backedOff = false

    init(socket: ListeningSocket, kind: GatewayMetrics.Listener, worker: LoopWorker) {
        self.socket = socket
        self.kind = kind
        self.worker = worker
    }

    func loopDidReport(readable: Bool, writable: Bool) {
        // A bounded batch per pass keeps one busy listener from starving the others.
        for _ in 0..<64 {
            // MAX_HANDSHAKES: leave the rest in the kernel's queue until a handshake ends.
            if kind == .public && worker.handshakeSlotsLeft == 0 { return }
            do {
                guard let accepted = try socket.accept() else { return }
                worker.accepted(accepted, kind: kind)
            } catch {
                // EMFILE and friends: level-triggered readiness would report the listener
                // again at once, so back off instead of spinning.
                worker.backOff(self, error: error)
                return
            }
        }
    }
}
