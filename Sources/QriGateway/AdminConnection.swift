import QriHTTP
import QriLoop

/// A connection on the admin listener. (Minimal until the admin API lands: health only.)
final class AdminConnection: Connection {
    private var parser: RequestHeadParser
    private var headBytes: [UInt8] = []

    init(worker: LoopWorker, transport: any Transport, tls: Bool) {
        parser = RequestHeadParser(limit: worker.gateway.configuration.maxHeaderBytes)
        super.init(worker: worker, transport: transport, listener: .admin, tls: tls)
    }

    override func didBecomeReady() {
        worker.arm(self, .header)
    }

    override func didRead(_ bytes: UnsafeRawBufferPointer) -> Bool {
        headBytes.append(contentsOf: bytes)
        switch headBytes.withUnsafeBytes({ parser.parse($0) }) {
        case .incomplete:
            return true
        case .failed(let error):
            enqueueAndClose(ResponseHead.complete(error.status, body: []))
            return false
        case .complete(let head, _):
            worker.disarm(self)
            if head.pathIs("/healthz") {
                enqueueAndClose(ResponseHead.complete(.ok, headers: [("Content-Type", "text/plain")], body: Array("ok".utf8)))
            } else {
                enqueueAndClose(ResponseHead.complete(.unauthorized, headers: [("WWW-Authenticate", "Bearer")], body: []))
            }
            return false
        }
    }
}
