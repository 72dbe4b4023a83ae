import CQriNghttp2
import QriHTTP
import QriLoop

/// The HTTP/2 side of a public connection whose ALPN selected `h2`: nghttp2's server session
/// driven with memory I/O by the connection's reads and flushes, and the connection's
/// streams by id (SPEC.md, *HTTP/2*).
///
/// Bytes read go to `nghttp2_session_mem_recv`, whose callbacks open streams and answer
/// them; `fill()` (in the connection's before-sleep flush) moves what nghttp2 has to send —
/// every stream's DATA as far as its window allows — into the connection's one output queue,
/// so all streams of a connection leave in one write per pass.
///
/// Confined to its connection's loop thread. The session's user data is this object,
/// unretained: the connection keeps it, and `nghttp2_session_del` runs in its deinit.
final class H2Session {
    unowned let connection: StreamConnection
    private var session: OpaquePointer?
    /// Streams by id: requests being read, answers being sent, and SSE streams.
    private var streams: [Int32: H2Stream] = [:]
    /// SSE streams open on this connection.
    private(set) var eventStreams = 0
    /// Set once an abuse bound was hit: counted once, the connection closes after its GOAWAY.
    private var abuse: GatewayMetrics.RejectReason?
    /// Set once GOAWAY was sent for a shutdown.
    private var goingAway = false

    var worker: LoopWorker { connection.worker }
    var gateway: GatewayCore { connection.worker.gateway }

    /// Output nghttp2 may add past what the socket took before `fill()` stops: the socket, not
    /// this queue, holds what a stalled client refused.
    private static let outputHighWater = 256 << 10
    /// Rapid reset (CVE-2023-44487): RST_STREAMs a client may send, as a token bucket.
    static let resetBurst: UInt64 = 200
    static let resetsPerSecond: UInt64 = 50

    init(connection: StreamConnection) {
        self.connection = connection
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, ud in
            H2Session.from(ud).beginHeaders(frame!.pointee.hd.stream_id, category: frame!.pointee.headers.cat)
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, ud in
            H2Session.from(ud).header(frame!.pointee.hd.stream_id,
                                      UnsafeBufferPointer(start: name, count: nameLength),
                                      UnsafeBufferPointer(start: value, count: valueLength))
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, ud in
            H2Session.from(ud).frameReceived(frame!.pointee.hd)
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, _, ud in
            H2Session.from(ud).streamClosed(id)
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, ud in
            H2Session.from(ud).frameSent(frame!.pointee)
            return 0
        }
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_stream_reset_rate_limit(option, Self.resetBurst, Self.resetsPerSecond)
        nghttp2_option_set_max_continuations(option, 8)
        nghttp2_session_server_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        let configuration = gateway.configuration
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                                   value: UInt32(clamping: configuration.h2MaxStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(clamping: configuration.maxHeaderBytes)),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
    }

    deinit { nghttp2_session_del(session) }

    private static func from(_ userData: UnsafeMutableRawPointer?) -> H2Session {
        Unmanaged<H2Session>.fromOpaque(userData!).takeUnretainedValue()
    }

    // MARK: Input

    /// Feeds bytes read from the client. Returns false when the connection is to stop
    /// reading (it closes once its GOAWAY is written).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let session, abuse == nil else { return false }
        let result = nghttp2_session_mem_recv(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        if result < 0 {
            switch Int32(result) {
            case NGHTTP2_ERR_FLOODED.rawValue: refuse(.h2Flood, NGHTTP2_ENHANCE_YOUR_CALM)
            case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue: refuse(.h2Flood, NGHTTP2_ENHANCE_YOUR_CALM)
            case NGHTTP2_ERR_TOO_MANY_SETTINGS.rawValue: refuse(.h2Flood, NGHTTP2_ENHANCE_YOUR_CALM)
            case NGHTTP2_ERR_HEADER_COMP.rawValue: refuse(.h2HeaderTooLarge, NGHTTP2_COMPRESSION_ERROR)
            default: refuse(abuse ?? .h2ProtocolError, NGHTTP2_PROTOCOL_ERROR)
            }
        }
        connection.requestFlush()
        if abuse == nil && nghttp2_session_want_read(session) == 0 {
            // The session ended (the client's GOAWAY, or nghttp2's own, counted in
            // `frameSent`): close once what is queued has been written.
            closeEventStreams()
            connection.closeWhenOutputDrained()
            worker.arm(connection, .linger)
            return false
        }
        return abuse == nil
    }

    /// Counts an abuse bound once, sends GOAWAY (unless nghttp2 already queued one) and
    /// closes the connection when it has been written.
    private func refuse(_ reason: GatewayMetrics.RejectReason, _ code: nghttp2_error_code?) {
        guard abuse == nil else { return }
        abuse = reason
        worker.reject(fd: connection.transport.fd, reason)
        if let code { nghttp2_session_terminate_session(session, code.rawValue) }
        closeEventStreams()
        connection.closeWhenOutputDrained()
        // A client that does not read its GOAWAY does not keep the connection.
        worker.arm(connection, .linger)
    }

    private func beginHeaders(_ id: Int32, category: nghttp2_headers_category) -> Int32 {
        guard category == NGHTTP2_HCAT_REQUEST else { return 0 }
        streams[id] = H2Stream(id: id, session: self)
        return 0
    }

    private func header(_ id: Int32, _ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Int32 {
        guard let stream = streams[id], let request = stream.request else { return 0 }
        // MAX_HEADER_BYTES after HPACK decoding, counted as RFC 9113's header list size.
        request.bytes += name.count + value.count + 32
        if request.bytes > gateway.configuration.maxHeaderBytes {
            refuse(.h2HeaderTooLarge, NGHTTP2_ENHANCE_YOUR_CALM)
            return Int32(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)
        }
        request.add(Array(name), Array(value))
        return 0
    }

    private func frameReceived(_ header: nghttp2_frame_hd) -> Int32 {
        if header.length == 0 && header.type == UInt8(NGHTTP2_DATA.rawValue)
            && header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) == 0 && emptyFrameFlood() {
            refuse(.h2Flood, NGHTTP2_ENHANCE_YOUR_CALM)
            return Int32(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)
        }
        guard header.type == UInt8(NGHTTP2_HEADERS.rawValue) || header.type == UInt8(NGHTTP2_DATA.rawValue),
              let stream = streams[header.stream_id], let request = stream.request else { return 0 }
        let ended = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        if header.type == UInt8(NGHTTP2_HEADERS.rawValue) {
            // A body is not read: the answer goes out at once, as over HTTP/1.1.
            stream.request = nil
            stream.respond(to: request.head(hasBody: !ended))
        }
        return 0
    }

    /// Empty DATA frames (no END_STREAM) this second, and when the second began: they cost
    /// a callback each and carry nothing (nghttp2 1.52 does not bound them).
    private var emptyFrames = 0
    private var emptyFramesSince: UInt64 = 0
    static let emptyFramesPerSecond = 100

    private func emptyFrameFlood() -> Bool {
        let now = Clock.monotonicNanoseconds()
        if now - emptyFramesSince > 1_000_000_000 {
            emptyFramesSince = now
            emptyFrames = 0
        }
        emptyFrames += 1
        return emptyFrames > Self.emptyFramesPerSecond
    }

    private func streamClosed(_ id: Int32) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        stream.closed()
    }

    private func frameSent(_ frame: nghttp2_frame) {
        // nghttp2 ends a session on its own — its rapid-reset bucket with INTERNAL_ERROR, a
        // frame that breaks the protocol with PROTOCOL_ERROR and the like — without
        // `mem_recv` failing: count it by the GOAWAY it sent.
        guard frame.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue), abuse == nil, !goingAway else { return }
        let code = frame.goaway.error_code
        guard code != NGHTTP2_NO_ERROR.rawValue else { return }
        refuse(code == NGHTTP2_INTERNAL_ERROR.rawValue ? .h2RapidReset
               : code == NGHTTP2_ENHANCE_YOUR_CALM.rawValue ? .h2Flood : .h2ProtocolError, nil)
    }

    // MARK: Streams

    func eventStreamOpened() {
        eventStreams += 1
        if eventStreams == 1 { worker.disarm(connection) }
    }

    func eventStreamClosed() {
        eventStreams -= 1
        // A connection with no stream must open one within HEADER_TIMEOUT, as over HTTP/1.1.
        if eventStreams == 0 && !connection.isClosed && abuse == nil && !goingAway { worker.arm(connection, .header) }
    }

    /// Submits a response on `id`; the body comes from the stream's queue.
    func submitResponse(_ id: Int32, status: HTTPStatus, headers: [(String, String)], hasBody: Bool) {
        var all = [(":status", String(status.code))]
        all += headers.map { ($0.0.lowercased(), $0.1) }
        // One buffer for every name and value; nghttp2 copies them (no NO_COPY flags).
        let total = all.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count }
        let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: max(total, 1))
        defer { storage.deallocate() }
        var offset = 0
        func place(_ text: String) -> (UnsafeMutablePointer<UInt8>, Int) {
            let start = storage + offset
            for byte in text.utf8 {
                storage[offset] = byte
                offset += 1
            }
            return (start, text.utf8.count)
        }
        var nva: [nghttp2_nv] = []
        nva.reserveCapacity(all.count)
        for (name, value) in all {
            let n = place(name)
            let v = place(value)
            nva.append(nghttp2_nv(name: n.0, value: v.0, namelen: n.1, valuelen: v.1,
                                  flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
        }
        if hasBody {
            var provider = nghttp2_data_provider()
            provider.read_callback = { _, id, buffer, length, flags, _, ud in
                H2Session.from(ud).readData(id, into: buffer!, length: length, flags: flags!)
            }
            nghttp2_submit_response(session, id, nva, nva.count, &provider)
        } else {
            nghttp2_submit_response(session, id, nva, nva.count, nil)
        }
        connection.requestFlush()
    }

    private func readData(_ id: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                          flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[id] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let n = stream.take(into: buffer, length: length)
        if n == 0 && !stream.endsWhenSent {
            stream.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        if stream.endsWhenSent && stream.pendingCount == 0 {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        }
        return n
    }

    /// Bytes were queued on a stream: resumes its DATA if nghttp2 parked it.
    func dataQueued(_ stream: H2Stream) {
        if stream.deferred {
            stream.deferred = false
            nghttp2_session_resume_data(session, stream.id)
        }
        connection.requestFlush()
    }

    /// Resets a stream (`RST_STREAM`) with `code`.
    func reset(_ stream: H2Stream, _ code: nghttp2_error_code) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, code.rawValue)
        connection.requestFlush()
    }

    // MARK: Output

    /// Moves what nghttp2 has to send into the connection's output queue, up to a high-water
    /// mark. Returns whether nghttp2 may have more (it stopped at the mark).
    func fill() -> Bool {
        guard let session else { return false }
        while connection.pendingOutputBytes < Self.outputHighWater {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 {
                refuse(.h2ProtocolError, nil)
                return false
            }
            if n == 0 { return false }
            connection.appendOutput(UnsafeRawBufferPointer(start: data, count: n))
        }
        return true
    }

    /// The slow-stream rule per HTTP/2 stream, after a write was tried: a stream holding more
    /// than STREAM_BUFFER that its window or the socket refused is reset and counted.
    func resetSlowStreams() {
        let limit = gateway.configuration.streamBufferBytes
        for stream in streams.values where stream.isEventStream && stream.pendingCount > limit {
            gateway.metrics.slowStreamsClosed.increment()
            stream.closed()
            reset(stream, NGHTTP2_CANCEL)
        }
    }

    /// Whether the session has ended and all it had to say has been written.
    var isFinished: Bool {
        guard let session else { return true }
        return nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0
    }

    /// Graceful shutdown: GOAWAY (no new streams), then the streams end with the connection.
    func goAway() {
        guard !goingAway, abuse == nil else { return }
        goingAway = true
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                              nghttp2_session_get_last_proc_stream_id(session), NGHTTP2_NO_ERROR.rawValue, nil, 0)
        closeEventStreams()
    }

    /// Takes every SSE stream out of routing (the connection is closing).
    func closeEventStreams() {
        for stream in streams.values { stream.closed() }
    }

    /// The connection closed: nghttp2 calls no stream-close callback for open streams.
    func connectionClosed() {
        closeEventStreams()
        streams = [:]
    }
}
