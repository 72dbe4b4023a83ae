import QriLoop
import QriTransport

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
        var failure: IngestFrameError?
        do throws(IngestFrameError) {
            try decoder.feed(bytes) { batch.append($0) }
        } catch {
            failure = error
        }
        let completedFrames = !batch.isEmpty
        if completedFrames {
            if let cluster = worker.clusterLoop {
                publish(batch, through: cluster)
            } else {
                gateway.route(batch, source: .ingest)
            }
            batch.removeAll(keepingCapacity: true)
        }
        if let failure {
            gateway.metrics.rejected(.badFrame)
            let fd = transport.fd
            gateway.warnings.warning(.badFrame, "closing ingest connection: bad frame") {
                ["peer": "\(ConnectedSocket.peerName(of: fd) ?? "?")", "reason": "\(failure)"]
            }
            close()
            return false
        }
        // FRAME_TIMEOUT runs from a frame's first byte, never between frames: a sender
        // that stops halfway through a frame does not hold its buffer for ever.
        if decoder.bufferedBytes == 0 {
            if deadline != 0 { worker.disarm(self) }
        } else if deadline == 0 || completedFrames {
            worker.arm(self, .frame)
        }
        // A sender may push faster than streams drain (or Redis answers): leave the rest in
        // the socket (and so slow the sender through TCP) when the loops are behind, and let
        // other connections of this loop have their turn after a bounded amount each pass.
        if let cluster = worker.clusterLoop, unpublished > Self.maxUnpublished || cluster.isBacklogged {
            pauseReading()
            worker.resumeWhenDrained(self)
            return false
        }
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

    // MARK: Cluster mode

    /// Messages handed to Redis and not answered yet.
    private var unpublished = 0
    private static let maxUnpublished = 10_000

    /// Whether this connection's own backlog allows it to read again.
    var mayResume: Bool { unpublished < Self.maxUnpublished / 2 }

    /// Publishes the messages of one read through Redis; they wait there for a server that
    /// is away (nothing accepted is dropped) while this connection stops reading.
    private func publish(_ messages: [IngestMessage], through cluster: ClusterLoop) {
        worker.gateway.metrics.received(.ingest, count: messages.count)
        unpublished += messages.count
        cluster.publish(messages, deadline: nil) { [weak self] results in
            self?.unpublished -= results.count
        }
    }

    /// What one ingest connection may read per pass. Past fairness among connections, it
    /// sets how well output coalesces under saturation: a pass that reads more before the
    /// loop flushes (a bounded number of connections per pass) leaves more events queued per
    /// stream, so they share one TLS record and one write(2), the largest cost per event.
    /// 256 KiB gave 11–13 µs of server CPU per targeted event flat out, 1 MiB 7–9 µs.
    private static let bytesPerTurn = 1 << 20
}
