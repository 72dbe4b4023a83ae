import CQriSystem
import DequeModule
public import QriLoop
public import QriTransport
public import QriTLS
#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking, pipelined connection to one Redis server, driven by one event loop: the
/// socket, TLS (for `rediss://`), AUTH and SELECT on connect, replies matched to commands in
/// order, and reconnection with capped, jittered exponential back-off. hiredis only formats
/// and parses; no call here ever blocks.
///
/// A subscriber connection also hands pub/sub pushes (messages, subscribe confirmations) to
/// `onPush` instead of matching them to commands.
///
/// Confined to its loop's thread: make it, call it and read it there only.
public final class RedisConnection: ReadinessHandler {
    public typealias Reply = (Result<RESPValue, RedisError>) -> Void

    public let endpoint: RedisEndpoint
    /// Called once the connection is up (after every reconnect), and once when it goes down.
    public var onUp: (() -> Void)?
    public var onDown: ((String) -> Void)?
    /// Pub/sub pushes of a subscriber connection.
    public var onPush: ((RESPValue) -> Void)?
    /// Called after the replies and pushes of one read were handed out: where a subscriber
    /// hands the messages of one read on as one batch.
    public var onReadEnd: (() -> Void)?

    private enum State { case down, connecting, handshaking, settingUp, up }

    private let address: String
    private let loop: EventLoop
    private let tls: TLSClientContext?
    private let subscriber: Bool
    private let stallNanoseconds: UInt64
    private var state = State.down
    private var fd: Int32 = -1
    private var transport: (any Transport)?
    private var reader = RESPReader()
    private var output = OutputQueue()
    private var pending = Deque<(sent: UInt64, reply: Reply)>()
    private var flushScheduled = false
    private var writeWantsRead = false
    private var failures = 0
    private var lastHeard: UInt64 = 0
    private var downReported = true
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)

    /// - Parameters:
    ///   - address: the endpoint's host as a literal IP (resolved once at start-up).
    ///   - stallSeconds: a connection that has had no byte from Redis for this long while
    ///     waiting for a reply (or a ping) is dropped and made again.
    public init(endpoint: RedisEndpoint, address: String, loop: EventLoop, tls: TLSClientContext?,
                subscriber: Bool, stallSeconds: Double) {
        self.endpoint = endpoint
        self.address = address
        self.loop = loop
        self.tls = tls
        self.subscriber = subscriber
        stallNanoseconds = UInt64(max(stallSeconds, 0.2) * 1e9)
        loop.beforeSleep { [weak self] in self?.flushIfScheduled() }
        loop.every(nanoseconds: 500_000_000) { [weak self] in self?.checkHealth() }
    }

    deinit {
        closeSocket()
        readBuffer.deallocate()
    }

    public var isUp: Bool { state == .up }
    /// Commands sent and not answered yet.
    public var inFlight: Int { pending.count }

    /// Starts connecting; later failures reconnect by themselves.
    public func start() {
        guard state == .down else { return }
        connect()
    }

    /// Sends a command; `reply` is called on this loop with its reply, or with `.unavailable`
    /// when the connection is down or goes down before the reply. An error reply is a
    /// success carrying `.error`.
    public func send(_ arguments: [[UInt8]], reply: @escaping Reply) {
        guard state == .up else {
            reply(.failure(.unavailable("not connected to \(endpoint)")))
            return
        }
        enqueue(arguments, reply: reply)
    }

    /// Sends a command whose answers come as pushes (SUBSCRIBE, UNSUBSCRIBE on a subscriber
    /// connection). Returns false when the connection is down.
    @discardableResult
    public func sendExpectingPushes(_ arguments: [[UInt8]]) -> Bool {
        guard state == .up else { return false }
        output.append(RESPCommand.format(arguments))
        scheduleFlush()
        return true
    }

    private func enqueue(_ arguments: [[UInt8]], reply: @escaping Reply) {
        output.append(RESPCommand.format(arguments))
        pending.append((Clock.monotonicNanoseconds(), reply))
        scheduleFlush()
    }

    // MARK: Connecting

    private func connect() {
        let fd = cqri_connect(address, Int32(endpoint.port))
        guard fd >= 0 else {
            return failed("connect to \(endpoint): \(SystemError("connect").description)")
        }
        self.fd = fd
        ConnectedSocket.enableKeepAlive(fd, idle: 10, interval: 5, count: 3)
        do {
            try loop.register(fd: fd, interest: .writable, handler: self)
        } catch {
            Glibc.close(fd)
            self.fd = -1
            return failed("registering \(endpoint): \(error)")
        }
        state = .connecting
        lastHeard = Clock.monotonicNanoseconds()
    }

    public func loopDidReport(readable: Bool, writable: Bool) {
        switch state {
        case .down:
            return
        case .connecting:
            let error = cqri_socket_error(fd)
            guard error == 0 else { return failed("connect to \(endpoint): \(SystemError("connect", errno: error).description)") }
            if let tls {
                guard let t = tls.makeConnection(fd: fd) else { return failed("TLS set-up for \(endpoint)") }
                transport = t
                state = .handshaking
                advanceHandshake()
            } else {
                transport = PlainTransport(fd: fd)
                setUp()
            }
        case .handshaking:
            advanceHandshake()
        case .settingUp, .up:
            if writable || (readable && writeWantsRead) {
                writeWantsRead = false
                flush()
            }
            if readable && state != .down { readAvailable() }
        }
    }

    private func advanceHandshake() {
        guard let transport else { return }
        switch transport.handshake() {
        case .done:
            setUp()
        case .wantRead:
            loop.setInterest(fd: fd, .readable)
        case .wantWrite:
            loop.setInterest(fd: fd, [.readable, .writable])
        case .closed:
            failed("TLS handshake with \(endpoint): closed")
        case .failed(let why):
            failed("TLS handshake with \(endpoint): \(why)")
        }
    }

    /// AUTH and SELECT, pipelined; the connection counts as up once both are answered.
    private func setUp() {
        state = .settingUp
        loop.setInterest(fd: fd, .readable)
        lastHeard = Clock.monotonicNanoseconds()
        var steps: [[[UInt8]]] = []
        if let password = endpoint.password {
            steps.append([Array("AUTH".utf8)] + (endpoint.user.map { [Array($0.utf8)] } ?? []) + [Array(password.utf8)])
        }
        if endpoint.database != 0 && !subscriber {
            steps.append([Array("SELECT".utf8), Array(String(endpoint.database).utf8)])
        }
        // A PING last: its answer says every earlier step was answered.
        steps.append([Array("PING".utf8)])
        for (i, step) in steps.enumerated() {
            let last = i == steps.count - 1
            enqueue(step) { [weak self] result in
                guard let self, self.state == .settingUp else { return }
                switch result {
                case .success(.error(let message)):
                    // The first word only: an AUTH error must not echo anything secret.
                    self.failed("set-up of \(self.endpoint) refused: \(message.split(separator: " ").first ?? "error")")
                case .success:
                    if last { self.becameUp() }
                case .failure:
                    break
                }
            }
        }
    }

    private func becameUp() {
        state = .up
        failures = 0
        downReported = false
        onUp?()
    }

    // MARK: Reading and writing

    private func readAvailable() {
        guard let transport else { return }
        while state != .down {
            switch transport.read(into: readBuffer) {
            case .done(let n):
                lastHeard = Clock.monotonicNanoseconds()
                reader.feed(UnsafeRawBufferPointer(rebasing: readBuffer[..<n]))
                do {
                    while state != .down, let value = try reader.next() { dispatch(value) }
                } catch {
                    onReadEnd?()
                    return failed("\(error)")
                }
                onReadEnd?()
            case .wantRead:
                return
            case .wantWrite:
                loop.setInterest(fd: fd, [.readable, .writable])
                return
            case .closed:
                return failed("\(endpoint) closed the connection")
            case .failed(let why):
                return failed("\(endpoint): \(why)")
            }
        }
    }

    private static let pushKinds: Set<[UInt8]> = Set(["message", "smessage", "subscribe", "unsubscribe", "ssubscribe",
                                                       "sunsubscribe", "pong"].map { Array($0.utf8) })

    private func dispatch(_ value: RESPValue) {
        if subscriber, state == .up, case .array(let items) = value, let kind = items.first?.bytes, Self.pushKinds.contains(kind) {
            onPush?(value)
            return
        }
        guard let waiting = pending.popFirst() else {
            return failed("\(endpoint) sent a reply nobody asked for")
        }
        waiting.reply(.success(value))
    }

    private func scheduleFlush() {
        flushScheduled = true
    }

    private func flushIfScheduled() {
        guard flushScheduled else { return }
        flushScheduled = false
        flush()
    }

    private func flush() {
        guard let transport, state == .settingUp || state == .up else { return }
        switch output.write(to: transport, keepingCapacityUpTo: 64 << 10) {
        case .drained:
            loop.setInterest(fd: fd, .readable)
        case .wantWrite:
            loop.setInterest(fd: fd, [.readable, .writable])
        case .wantRead:
            writeWantsRead = true
        case .closed:
            failed("\(endpoint) closed the connection")
        case .failed(let why):
            failed("\(endpoint): \(why)")
        }
    }

    // MARK: Health and failure

    /// Pings an idle connection, and drops one that has heard nothing for too long while it
    /// waits (a server that stopped answering, or a network that dropped the packets).
    private func checkHealth() {
        let now = Clock.monotonicNanoseconds()
        switch state {
        case .connecting, .handshaking, .settingUp:
            if now - lastHeard > stallNanoseconds { failed("\(endpoint) did not answer within \(stallNanoseconds / 1_000_000) ms") }
        case .up:
            if now - lastHeard > stallNanoseconds && (subscriber || !pending.isEmpty) {
                return failed("\(endpoint) did not answer within \(stallNanoseconds / 1_000_000) ms")
            }
            if now - lastHeard > stallNanoseconds / 4 {
                if subscriber {
                    sendExpectingPushes([Array("PING".utf8)])
                } else if pending.isEmpty {
                    enqueue([Array("PING".utf8)]) { _ in }
                }
            }
        case .down:
            break
        }
    }

    private func closeSocket() {
        if fd >= 0 {
            loop.unregister(fd: fd)
            if let transport {
                transport.close()
            } else {
                Glibc.close(fd)
            }
            fd = -1
        }
        transport = nil
    }

    private func failed(_ why: String) {
        closeSocket()
        state = .down
        reader = RESPReader()
        output.removeAll()
        writeWantsRead = false
        let waiting = pending
        pending.removeAll()
        if !downReported {
            downReported = true
            onDown?(why)
        }
        for entry in waiting { entry.reply(.failure(.unavailable(why))) }
        // Capped, jittered exponential back-off: 100 ms, 200 ms, … 5 s, each ±50 %.
        failures += 1
        let base = min(UInt64(100_000_000) << UInt64(min(failures - 1, 6)), 5_000_000_000)
        let delay = base / 2 + UInt64.random(in: 0...base)
        loop.after(nanoseconds: delay) { [weak self] in
            guard let self, self.state == .down else { return }
            self.connect()
        }
    }
}
