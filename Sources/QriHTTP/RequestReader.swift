/// A complete request: its head and its decoded body.
public struct HTTPRequest: Sendable {
    public var head: RequestHead
    public var body: [UInt8]
}

/// Reads whole requests, one after another, from the bytes of a keep-alive connection:
/// head, then a body framed by `Content-Length` or chunked, each bounded. Pipelined requests
/// come out one per `next()` call, in order.
///
/// Pure and incremental: `append` what arrives, then call `next()` until it says `.needMore`.
public struct RequestReader: Sendable {
    public enum Next: Sendable {
        case needMore
        case request(HTTPRequest)
        /// The connection cannot go on; answer with the error's status and close.
        case failed(HTTPError)
    }

    private enum State: Sendable {
        case head
        case fixedBody(RequestHead, length: Int)
        case chunkedBody(RequestHead, ChunkedDecoder)
    }

    private var buffer: [UInt8] = []
    private var consumed = 0
    private var state = State.head
    private var parser: RequestHeadParser
    public let maxBodyBytes: Int

    public init(maxHeaderBytes: Int, maxBodyBytes: Int) {
        parser = RequestHeadParser(limit: maxHeaderBytes)
        self.maxBodyBytes = maxBodyBytes
    }

    /// Bytes received and not yet part of a returned request.
    public var bufferedBytes: Int { buffer.count - consumed }
    /// Whether a request has started arriving (for timeouts: a head is being waited for).
    public var isMidRequest: Bool {
        if case .head = state { return bufferedBytes > 0 }
        return true
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if consumed > 0 && consumed == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            consumed = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func next() -> Next {
        switch state {
        case .head:
            let start = consumed
            let result = buffer.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[start...])) }
            switch result {
            case .incomplete:
                return .needMore
            case .failed(let error):
                return .failed(error)
            case .complete(let head, let length):
                consumed += length
                parser.reset()
                switch head.bodyFraming() {
                case .failure(let error):
                    return .failed(error)
                case .success(.none):
                    compact()
                    return .request(HTTPRequest(head: head, body: []))
                case .success(.contentLength(let n)):
                    guard n <= maxBodyBytes else { return .failed(.bodyTooLarge) }
                    state = .fixedBody(head, length: n)
                case .success(.chunked):
                    state = .chunkedBody(head, ChunkedDecoder(maxBodyBytes: maxBodyBytes, maxOverheadBytes: parser.limit))
                }
                return next()
            }
        case .fixedBody(let head, let length):
            guard buffer.count - consumed >= length else { return .needMore }
            let body = Array(buffer[consumed..<(consumed + length)])
            consumed += length
            state = .head
            compact()
            return .request(HTTPRequest(head: head, body: body))
        case .chunkedBody(let head, var decoder):
            // The state gives up its copy first, so that the decoder's body is uniquely
            // referenced and grows in place instead of being copied on every call.
            state = .head
            let start = consumed
            var failure: HTTPError?
            let used = buffer.withUnsafeBytes { raw -> Int in
                do throws(HTTPError) {
                    return try decoder.feed(UnsafeRawBufferPointer(rebasing: raw[start...]))
                } catch {
                    failure = error
                    return 0
                }
            }
            if let failure { return .failed(failure) }
            consumed += used
            if decoder.isComplete {
                compact()
                return .request(HTTPRequest(head: head, body: decoder.body))
            }
            state = .chunkedBody(head, decoder)
            compact()
            return .needMore
        }
    }

    private mutating func compact() {
        if consumed == buffer.count {
            buffer = []
            consumed = 0
        } else if consumed > 4096 {
            buffer.removeFirst(consumed)
            consumed = 0
        }
    }
}
