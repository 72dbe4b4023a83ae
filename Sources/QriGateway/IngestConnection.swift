import QriLoop

/// A connection on the ingest listener: qri-py frames in, nothing out. A bad frame closes
/// this connection only; what it sent before stays delivered.
final class IngestConnection: Connection {
    private var decoder: IngestFrameDecoder

    init(worker: LoopWorker, transport: any Transport) {
        decoder = IngestFrameDecoder(maxFrameBytes: worker.gateway.configuration.maxFrameBytes)
        super.init(worker: worker, transport: transport, listener: .ingest, tls: false)
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let gateway = worker.gateway
        do {
            try decoder.feed(bytes) { gateway.route($0.message, to: $0.pair, source: .ingest) }
            return true
        } catch {
            gateway.metrics.rejected(.badFrame)
            gateway.logger.notice("closing ingest connection", metadata: ["reason": "\(error)"])
            close()
            return false
        }
    }
}
