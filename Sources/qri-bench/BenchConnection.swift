import QriLoop
import QriTransport
import QriTLS
#if canImport(Glibc)
import Glibc
#endif

/// A client connection of the load generator: non-blocking connect, optional TLS
/// handshake, an output queue written with OpenSSL's retry rule, and reads handed to the
/// subclass. Confined to the bench's one loop thread.
///
/// Life: connecting → handshaking (TLS only) → ready → closed.
class BenchConnection: ReadinessHandler {
    enum Phase { case connecting, handshaking, ready, closed }

    unowned let bench: Bench
    private(set) var phase = Phase.connecting
    private(set) var fd: Int32
    private(set) var transport: (any Transport)?
    private let tls: TLSClientContext?
    private let offeredSession: TLSSession?
    let startedAt = Clock.monotonicNanoseconds()

    private var output = OutputQueue()
    private var writeWantsRead = false
    private var readWantsWrite = false

    /// Connects; the caller registers nothing, the connection does it itself.
    init(bench: Bench, fd: Int32, tls: TLSClientContext?, session: TLSSession? = nil) throws(SystemError) {
        self.bench = bench
        self.fd = fd
        self.tls = tls
        offeredSession = session
        try bench.loop.register(fd: fd, interest: .writable, handler: self)
    }

    var pendingOutput: Int { output.pendingCount }
    var isClosed: Bool { phase == .closed }
    var tlsTransport: TLSTransport? { transport as? TLSTransport }

    // MARK: Subclass hooks

    func didBecomeReady() {}
    /// Bytes read; return false to stop reading this pass.
    func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool { true }
    func didClose(reason: String) {}

    // MARK: Readiness

    func loopDidReport(readable: Bool, writable: Bool) {
        switch phase {
        case .closed:
            return
        case .connecting:
            guard writable || readable else { return }
            let error = Connector.connectError(fd)
            if error != 0 { return close(reason: "connect: \(String(cString: strerror(error)))") }
            if let tls {
                guard let t = tls.makeConnection(fd: fd, session: offeredSession) else { return close(reason: "SSL_new") }
                transport = t
                phase = .handshaking
                bench.loop.setInterest(fd: fd, .readable)
                advanceHandshake()
            } else {
                transport = PlainTransport(fd: fd)
                becomeReady()
            }
        case .handshaking:
            advanceHandshake()
        case .ready:
            if writable || (readable && writeWantsRead) {
                writeWantsRead = false
                flush()
                if phase == .closed { return }
            }
            if readable || (writable && readWantsWrite) {
                readWantsWrite = false
                readAvailable()
            }
        }
    }

    private func advanceHandshake() {
        guard let transport else { return }
        switch transport.handshake() {
        case .done:
            becomeReady()
        case .wantRead:
            bench.loop.setInterest(fd: fd, .readable)
        case .wantWrite:
            bench.loop.setInterest(fd: fd, [.readable, .writable])
        case .closed:
            close(reason: "handshake: closed")
        case .failed(let why):
            close(reason: "handshake: \(why)")
        }
    }

    private func becomeReady() {
        phase = .ready
        bench.loop.setInterest(fd: fd, .readable)
        didBecomeReady()
        if phase == .ready { flush() }
        if phase == .ready, transport?.hasBufferedInput == true { readAvailable() }
    }

    private func readAvailable() {
        guard let transport else { return }
        let buffer = bench.readBuffer
        while phase == .ready {
            switch transport.read(into: buffer) {
            case .done(let n):
                if !didRead(UnsafeRawBufferPointer(rebasing: buffer[..<n])) { return }
            case .wantRead:
                return
            case .wantWrite:
                readWantsWrite = true
                bench.loop.setInterest(fd: fd, [.readable, .writable])
                return
            case .closed:
                return close(reason: "closed by server")
            case .failed(let why):
                return close(reason: why)
            }
        }
    }

    // MARK: Output

    /// Queues bytes; call `flush()` to write (once per batch).
    func queue(_ bytes: UnsafeRawBufferPointer) {
        output.append(bytes)
    }

    func queue(_ bytes: [UInt8]) {
        output.append(bytes)
    }

    /// Writes what is queued until done or the socket is full.
    func flush() {
        guard phase == .ready, let transport else { return }
        // A publisher keeps its buffer between batches.
        switch output.write(to: transport, keepingCapacityUpTo: 1 << 20) {
        case .drained:
            break
        case .wantWrite:
            bench.loop.setInterest(fd: fd, [.readable, .writable])
            return
        case .wantRead:
            writeWantsRead = true
            return
        case .closed:
            return close(reason: "closed while writing")
        case .failed(let why):
            return close(reason: why)
        }
        bench.loop.setInterest(fd: fd, .readable)
    }

    // MARK: Closing

    /// Closes at once (no close_notify: the bench measures the server, not goodbyes).
    func close(reason: String) {
        if phase == .closed { return }
        phase = .closed
        bench.loop.unregister(fd: fd)
        if let transport {
            transport.close()
        } else {
            Glibc.close(fd)
        }
        transport = nil
        fd = -1
        output.removeAll()
        didClose(reason: reason)
    }
}
