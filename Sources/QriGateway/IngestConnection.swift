import QriLoop

/// A connection on the ingest listener: qri-py frames in, nothing out. A bad frame closes
/// this connection only; what it sent before stays delivered.
final class IngestConnection: Connection {
    private var decoder: IngestFrameDecoder
    /// Bytes read since the loop last reported this connection readable.
    private var readThisTurn = 0
    /// The messages of one read, routed together; kept for its capacity.
    private var batch: [IngestMessage] = []

    init(worker: LoopWorker, transport: any Transport) {
        decoder = IngestFrameDecoder(maxFrameBytes: worker.gateway.configuration.maxFrameBytes)
        super.init(worker: worker, transport: transport, listener: .ingest, tls: false)
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let gateway = worker.gateway
        // The frames of one read are routed under one registry lock; those before a bad
        // frame are routed too.
        let fed = Result { () throws(IngestFrameError) in try decoder.feed(bytes) { batch.append($0) } }
        if !batch.isEmpty {
            gateway.route(batch, source: .ingest)
            batch.removeAll(keepingCapacity: true)
        }
        do {
            try fed.get()
        } catch {
            gateway.metrics.rejected(.badFrame)
            gateway.logger.notice("closing ingest connection", metadata: ["reason": "\(error)"])
            close()
            return false
        }
        // A sender may push faster than streams drain: leave the rest in the socket (and so
        // slow the sender through TCP) when the loops are behind, and let other connections
        // of this loop have their turn after a bounded amount each pass.
        if gateway.deliveryBacklogged() {
            pauseReading()
            worker.resumeWhenDrained(self)
            return false
        }
        readThisTurn += bytes.count
        return readThisTurn < Self.bytesPerTurn
    }

    override func willReadAvailable() {
        readThisTurn = 0
    }

    /// What one ingest connection may read per pass. Past fairness among connections, it
    /// sets how well output coalesces under saturation: a pass that reads more before the
    /// loop flushes (a bounded number of connections per pass) leaves more events queued per
    /// stream, so they share one TLS record and one write(2), the largest cost per event.
    /// 256 KiB gave 11–13 µs of server CPU per targeted event flat out, 1 MiB 7–9 µs.
    private static let bytesPerTurn = 1 << 20
}
