import QriLoop

/// A connection on the ingest listener: qri-py frames in, nothing out. A bad frame closes
/// this connection only; what it sent before stays delivered.
final class IngestConnection: Connection {
    private var decoder: IngestFrameDecoder
    /// Bytes read since the loop last reported this connection readable.
    private var readThisTurn = 0

    init(worker: LoopWorker, transport: any Transport) {
        decoder = IngestFrameDecoder(maxFrameBytes: worker.gateway.configuration.maxFrameBytes)
        super.init(worker: worker, transport: transport, listener: .ingest, tls: false)
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let gateway = worker.gateway
        do {
            try decoder.feed(bytes) { gateway.route($0.message, to: $0.pair, source: .ingest) }
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

    private static let bytesPerTurn = 256 << 10
}
