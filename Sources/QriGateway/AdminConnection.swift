import QriHTTP
import QriLoop
import QriTransport

/// A connection on the admin listener: HTTP/1.1 keep-alive, pipelined requests answered in
/// order, each bounded in head size, body size and time.
final class AdminConnection: Connection {
    private var reader: RequestReader
    private var lingering = false
    /// Set once an answer ends the connection: later pipelined requests are not served.
    private var finished = false
    /// Set while an answer comes later (a publish through Redis): the requests after it
    /// wait, so that answers keep their order.
    private var awaitingAnswer = false

    init(worker: LoopWorker, transport: any Transport, tls: Bool) {
        let configuration = worker.gateway.configuration
        reader = RequestReader(maxHeaderBytes: configuration.maxHeaderBytes, maxBodyBytes: configuration.maxBodyBytes)
        super.init(worker: worker, transport: transport, listener: .admin, tls: tls)
    }

    override func didBecomeReady() {
        worker.arm(self, .header)
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // After a 413 the rest of the body is read and dropped until the client closes, so
        // that it sees the answer instead of a reset.
        if lingering || finished { return true }
        reader.append(bytes)
        return serveBufferedRequests()
    }

    /// Answers the complete requests read so far, in order. Returns whether to keep reading:
    /// a client that sends requests without reading the answers is not read from until they
    /// have left, so its answers cannot pile up in memory.
    private func serveBufferedRequests() -> Bool {
        while !isClosed && !lingering && !finished && !awaitingAnswer {
            if pendingOutputBytes > Self.maxQueuedAnswerBytes {
                pauseReadingUntilFlushed()
                return false
            }
            switch reader.next() {
            case .needMore:
                // The first byte of the next request starts its header timeout.
                if reader.isMidRequest && timeoutKind == .idle && deadline != 0 { worker.arm(self, .header) }
                return true
            case .failed(let error):
                fail(error)
                return false
            case .request(let request):
                answer(request)
            }
        }
        if awaitingAnswer && !isClosed {
            // Read no more until the answer came: pipelined requests stay in the socket.
            pauseReading()
            return false
        }
        return !isClosed
    }

    override func didDrainOutput() {
        _ = serveBufferedRequests()
    }

    /// Unsent answer bytes past which pipelined requests wait.
    private static let maxQueuedAnswerBytes = 256 << 10

    private func answer(_ request: HTTPRequest) {
        let response = worker.admin.handle(request)
        if let later = response.later {
            awaitingAnswer = true
            later(worker) { [weak self] answer in
                guard let self, !self.isClosed else { return }
                var answer = answer
                self.worker.admin.finish(&answer, for: request)
                self.awaitingAnswer = false
                self.send(answer, to: request)
                if !self.isClosed && !self.finished { _ = self.serveBufferedRequests() }
                if !self.isClosed && !self.finished { self.resumeReading() }
            }
            return
        }
        send(response, to: request)
    }

    private func send(_ response: AdminResponse, to request: HTTPRequest) {
        let keepAlive = request.head.wantsKeepAlive
        var head = ResponseHead(response.status, headers: response.headers)
        if response.status != .noContent || !response.body.isEmpty {
            head.add("Content-Length", String(response.body.count))
        }
        if !keepAlive { head.add("Connection", "close") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(160 + response.body.count)
        head.serialize(into: &bytes)
        if !request.head.methodIs("HEAD") { bytes += response.body }
        if keepAlive {
            enqueue(bytes)
            if reader.isMidRequest { worker.arm(self, .header) } else { worker.arm(self, .idle) }
        } else {
            finished = true
            enqueueAndClose(bytes)
        }
    }

    private func fail(_ error: HTTPError) {
        switch error {
        case .headerTooLarge: worker.reject(fd: transport.fd, .headerTooLarge)
        case .bodyTooLarge: worker.reject(fd: transport.fd, .bodyTooLarge)
        default: worker.reject(fd: transport.fd, .badRequest)
        }
        var head = ResponseHead(error.status, headers: [("Content-Type", "application/json"), ("Connection", "close")])
        let body = JSONWriter.error(error.reason)
        head.add("Content-Length", String(body.count))
        // Lingering close: answer, half-close, drop what still comes (the rest of a body too
        // large, say), close on EOF or after a short grace period — so the client sees the
        // answer rather than a reset.
        lingering = true
        enqueueAndHalfClose(head.serialized() + body)
        worker.arm(self, .linger)
    }
}
