import QriLoop
import QriTransport
import QriTLS

/// The part every connection shares: its transport, TLS handshake, output queue, timeout
/// and close. Subclasses add what they do with the bytes they read.
///
/// Life: handshaking → serving (the subclass's states) → closing (output flushed, then a
/// close_notify or half-close) → closed. Confined to its worker's loop thread.
class Connection: ReadinessHandler {
    unowned let worker: LoopWorker
    let transport: any Transport
    let listener: GatewayMetrics.Listener

    private(set) var isClosed = false
    private var handshaking: Bool
    /// Whether this connection holds one of its loop's MAX_HANDSHAKES slots.
    var holdsHandshakeSlot = false
    /// Whether the client has sent anything yet (its handshake has begun).
    private(set) var clientSpoke = false
    /// Close once the output queue is empty.
    private var closeWhenFlushed = false
    /// Half-close once the output queue is empty, and close when the peer does.
    private var halfCloseWhenFlushed = false

    private var output = OutputQueue()
    private var writeWantsRead = false
    private var readWantsWrite = false
    var queuedForFlush = false
    /// Set while the connection waits for its output to drain before reading more.
    private var readingPaused = false

    /// This connection's number on its loop: what timeouts refer to it by, so that a closed
    /// connection is freed at once rather than when its last armed deadline passes.
    var serial: UInt64 = 0
    /// The armed timeout's deadline (monotonic ns), 0 when none.
    var deadline: UInt64 = 0
    var timeoutKind = LoopWorker.TimeoutKind.handshake
    /// The client's address when it is counted against MAX_CONNECTIONS_PER_IP.
    var countedPeer: PeerAddress?

    init(worker: LoopWorker, transport: any Transport, listener: GatewayMetrics.Listener, tls: Bool) {
        self.worker = worker
        self.transport = transport
        self.listener = listener
        handshaking = tls
    }

    var pendingOutputBytes: Int { output.pendingCount }

    // MARK: Subclass hooks

    /// Called when the handshake completed (or at once for plain TCP).
    func didBecomeReady() {}
    /// Called before a round of reads.
    func willReadAvailable() {}
    /// Called with bytes read; return false to stop reading for this pass.
    func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool { true }
    /// Called once when the connection closes, for any reason.
    func didClose() {}
    /// Called when output queued while reading was paused has all been written.
    func didDrainOutput() {}
    /// Called when the armed timeout expires.
    func didTimeOut() { close() }
    /// Called after a write was tried and the transport took no more, with bytes still queued:
    /// what the client refused (the slow-stream rule judges only this).
    func didRefuseOutput() {}

    // MARK: Events

    /// Starts serving. A TLS connection waits for the client's first bytes before its
    /// handshake (and its TLS state) starts; the handshake timeout runs from now.
    func start() {
        if handshaking {
            worker.arm(self, .handshake)
        } else {
            didBecomeReady()
        }
    }

    func loopDidReport(readable: Bool, writable: Bool) {
        if isClosed { return }
        if handshaking {
            // A loop pass spends a bounded time on handshakes, so that a storm of them does
            // not delay the events of open streams; the rest wait for the next pass (the
            // socket stays readable, so the loop comes back to them at once).
            guard worker.handshakeTimeLeft else { return }
            let started = Clock.monotonicNanoseconds()
            advanceHandshake()
            worker.spentOnHandshakes(Clock.monotonicNanoseconds() - started)
            return
        }
        if writable || (readable && writeWantsRead) {
            writeWantsRead = false
            flush()
            if isClosed { return }
        }
        if !readingPaused && (readable || (writable && readWantsWrite)) {
            readWantsWrite = false
            readAvailable()
        }
    }

    private func advanceHandshake() {
        if !clientSpoke {
            // Past MAX_HANDSHAKES it waits, unwatched, until a slot frees.
            guard worker.clientSpoke(self) else { return }
            clientSpoke = true
        }
        switch transport.handshake() {
        case .done:
            handshaking = false
            worker.handshakeEnded(self)
            worker.gateway.metrics.handshakesOK.increment()
            countResumption()
            worker.disarm(self)
            didBecomeReady()
            if !isClosed && transport.hasBufferedInput { readAvailable() }
        case .wantRead:
            worker.loop.setInterest(fd: transport.fd, .readable)
        case .wantWrite:
            worker.loop.setInterest(fd: transport.fd, [.readable, .writable])
        case .closed:
            worker.gateway.metrics.handshakesFailed.increment()
            close()
        case .failed(let why):
            worker.gateway.metrics.handshakesFailed.increment()
            let fd = transport.fd
            worker.gateway.warnings.warning(.handshakeFailed, "TLS handshake failed") {
                ["peer": "\(ConnectedSocket.peerName(of: fd) ?? "?")", "listener": "\(self.listener.rawValue)", "error": "\(why)"]
            }
            close()
        }
    }

    private func countResumption() {
        switch (transport as? TLSTransport)?.resumption {
        case .cache?: worker.gateway.metrics.resumedFromCache.increment()
        case .ticket?: worker.gateway.metrics.resumedWithTicket.increment()
        case nil: break
        }
    }

    /// Reads until the transport has nothing more, handing each chunk to `didRead`.
    func readAvailable() {
        willReadAvailable()
        let buffer = worker.readBuffer
        while !isClosed {
            switch transport.read(into: buffer) {
            case .done(let n):
                if !didRead(UnsafeRawBufferPointer(rebasing: buffer[..<n])) { return }
            case .wantRead:
                return
            case .wantWrite:
                readWantsWrite = true
                worker.loop.setInterest(fd: transport.fd, [.readable, .writable])
                return
            case .closed, .failed:
                close()
                return
            }
        }
    }

    // MARK: Output

    /// Queues `bytes`; they leave in the loop's before-sleep flush, coalesced with the rest.
    func enqueue(_ bytes: [UInt8]) {
        output.append(bytes)
        scheduleFlush()
    }

    func enqueue(_ event: EncodedEvent) {
        output.append(event.wire)
        scheduleFlush()
    }

    /// Queues this connection for the before-sleep flush. A connection whose socket was full
    /// is tried again too, once per pass that gave it more bytes: a client that never reads
    /// never makes its socket writable, and only a write that was tried can tell.
    private func scheduleFlush() {
        if !queuedForFlush {
            queuedForFlush = true
            worker.needsFlush(self)
        }
    }

    /// Queues this connection for the before-sleep flush (a protocol that makes its output
    /// there, as HTTP/2 does).
    func requestFlush() {
        scheduleFlush()
    }

    /// Appends bytes to the output queue without scheduling a flush (for use inside one).
    func appendOutput(_ bytes: UnsafeRawBufferPointer) {
        output.append(bytes)
    }

    /// Closes in order once everything queued (and made by the next flush) has been written.
    func closeWhenOutputDrained() {
        closeWhenFlushed = true
        scheduleFlush()
    }

    /// Queues `bytes`, then closes in order once everything queued has been written.
    func enqueueAndClose(_ bytes: [UInt8]) {
        enqueue(bytes)
        closeWhenFlushed = true
    }

    /// Queues `bytes`, then half-closes once they are written and keeps reading (and
    /// dropping) until the peer closes or the linger timeout ends it.
    func enqueueAndHalfClose(_ bytes: [UInt8]) {
        enqueue(bytes)
        halfCloseWhenFlushed = true
    }

    /// Writes queued output until done or the socket is full.
    func flush() {
        if isClosed { return }
        switch output.write(to: transport) {
        case .drained:
            break
        case .wantWrite:
            worker.loop.setInterest(fd: transport.fd, readingPaused ? .writable : [.readable, .writable])
            didRefuseOutput()
            return
        case .wantRead:
            writeWantsRead = true
            didRefuseOutput()
            return
        case .closed, .failed:
            close()
            return
        }
        // Drained (and the buffer given back: most streams sit idle between events).
        worker.loop.setInterest(fd: transport.fd, .readable)
        if readingPaused {
            readingPaused = false
            didDrainOutput()
            if isClosed { return }
        }
        if closeWhenFlushed {
            transport.shutdownOutput()
            close()
        } else if halfCloseWhenFlushed {
            halfCloseWhenFlushed = false
            transport.shutdownOutput()
        }
    }

    /// Stops reading until everything queued has been written (back-pressure on a client
    /// that sends faster than it reads).
    func pauseReadingUntilFlushed() {
        readingPaused = true
        worker.loop.setInterest(fd: transport.fd, .writable)
    }

    /// Stops reading until `resumeReading()` (back-pressure from elsewhere).
    func pauseReading() {
        readingPaused = true
        worker.loop.setInterest(fd: transport.fd, pendingOutputBytes > 0 ? .writable : .none)
    }

    func resumeReading() {
        guard readingPaused, !isClosed else { return }
        readingPaused = false
        worker.loop.setInterest(fd: transport.fd, pendingOutputBytes > 0 ? [.readable, .writable] : .readable)
    }

    // MARK: Closing

    /// Closes at once: unregisters, frees the transport, tells the subclass. Idempotent.
    func close() {
        if isClosed { return }
        isClosed = true
        worker.handshakeEnded(self)
        worker.loop.unregister(fd: transport.fd)
        transport.close()
        output.removeAll()
        worker.forget(self)
        didClose()
    }

    /// Sends a close_notify (or half-close) after what is queued, then closes.
    func closeGracefully() {
        if isClosed { return }
        closeWhenFlushed = true
        flush()
        if !isClosed {
            transport.shutdownOutput()
            close()
        }
    }
}
