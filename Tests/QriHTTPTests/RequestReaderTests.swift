import QriHTTP
import Testing

enum Outcome: Equatable {
    case request(method: String, path: String, body: [UInt8])
    case failed(HTTPError)
}

/// Appends `chunks` one after another, calling `next()` until `.needMore` after each.
private func read(_ chunks: [[UInt8]], maxHeaderBytes: Int = 8192, maxBodyBytes: Int = 1 << 20) -> (outcomes: [Outcome], reader: RequestReader) {
    var reader = RequestReader(maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxBodyBytes)
    var outcomes: [Outcome] = []
    for chunk in chunks {
        chunk.withUnsafeBytes { reader.append($0) }
        loop: while true {
            switch reader.next() {
            case .needMore: break loop
            case .request(let r):
                outcomes.append(.request(method: String(decoding: r.head.method, as: UTF8.self),
                                         path: String(decoding: r.head.path, as: UTF8.self), body: r.body))
            case .failed(let error):
                outcomes.append(.failed(error))
                return (outcomes, reader)
            }
        }
    }
    return (outcomes, reader)
}

private func read(_ text: String, maxBodyBytes: Int = 1 << 20) -> [Outcome] {
    read([Array(text.utf8)], maxBodyBytes: maxBodyBytes).outcomes
}

private func isBadRequest(_ outcomes: [Outcome]) -> Bool {
    if case .failed(.badRequest) = outcomes.last { return true }
    return false
}

private func b(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct RequestReaderTests {
    static let pipeline = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        + "POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\npeer=p&s=x&"
        + "POST /backdoor HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        + "DELETE /backdoor?type=100 HTTP/1.1\r\nHost: a\r\n\r\n"

    static let expected: [Outcome] = [
        .request(method: "GET", path: "/healthz", body: []),
        .request(method: "POST", path: "/publish", body: b("peer=p&s=x&")),
        .request(method: "POST", path: "/backdoor", body: b("hello world")),
        .request(method: "DELETE", path: "/backdoor", body: []),
    ]

    @Test func pipelinedRequestsComeOutInOrder() {
        let (outcomes, reader) = read([b(Self.pipeline)])
        #expect(outcomes == Self.expected)
        #expect(reader.bufferedBytes == 0)
        #expect(!reader.isMidRequest)
    }

    @Test func pipelineSplitAtEveryByte() {
        let bytes = b(Self.pipeline)
        for cut in 1..<bytes.count {
            let (outcomes, _) = read([Array(bytes[..<cut]), Array(bytes[cut...])])
            #expect(outcomes == Self.expected, "split at \(cut)")
        }
        let (outcomes, _) = read(bytes.map { [$0] })
        #expect(outcomes == Self.expected)
    }

    @Test func midRequestTracking() {
        var reader = RequestReader(maxHeaderBytes: 8192, maxBodyBytes: 1024)
        #expect(!reader.isMidRequest)
        b("GET / HT").withUnsafeBytes { reader.append($0) }
        guard case .needMore = reader.next() else { Issue.record("expected needMore"); return }
        #expect(reader.isMidRequest)
        #expect(reader.bufferedBytes == 8)
    }

    @Test func bodyTooLarge() {
        #expect(read("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n", maxBodyBytes: 1000) == [.failed(.bodyTooLarge)])
        #expect(read("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + String(repeating: "x", count: 1000), maxBodyBytes: 1000).count == 1)
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        #expect(read(chunked + "3e9\r\n", maxBodyBytes: 1000) == [.failed(.bodyTooLarge)])
        #expect(read(chunked + "200\r\n" + String(repeating: "x", count: 512) + "\r\n200\r\n", maxBodyBytes: 1000).last == .failed(.bodyTooLarge))
    }

    @Test(arguments: [
        "5\nhello\r\n0\r\n\r\n",          // bare LF after the size
        "5\rhello\r\n0\r\n\r\n",          // bare CR after the size
        "g\r\nhello\r\n0\r\n\r\n",        // not hex
        "\r\nhello\r\n0\r\n\r\n",         // no size
        "-5\r\nhello\r\n0\r\n\r\n",       // signed
        "5\r\nhelloX\r\n0\r\n\r\n",       // data longer than its size
        "5\r\nhello\n0\r\n\r\n",          // bare LF after data
        "5\r\nhello\r\n0\r\n\n",          // bare LF ending the trailers
        "5\r\nhello\r\n0\r\n\nGET /hidden HTTP/1.1\r\n\r\n", // bare LF starting the trailers, then a "trailer"
        "5\r\nhello\r\n0\r\nX: y\n\r\n",  // bare LF in a trailer
        "1000000000000000\r\n",           // 16 hex digits
    ])
    func badChunking(_ body: String) {
        let outcomes = read("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        #expect(isBadRequest(outcomes), "\(body.debugDescription): \(outcomes)")
    }

    @Test func framingErrorsFailTheConnection() {
        #expect(isBadRequest(read("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")))
        #expect(isBadRequest(read("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")))
        #expect(read("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n") == [.failed(.notImplemented("gzip"))])
    }

    @Test func longPipelineCompactsItsBuffer() {
        // Enough requests that consumed bytes pass the compaction threshold, each arriving
        // split in two so a head is always pending when the buffer is compacted.
        let one = b("POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        var chunks: [[UInt8]] = []
        var stream: [UInt8] = []
        for _ in 0..<500 { stream += one }
        var offset = 0
        var size = 1
        while offset < stream.count {
            let n = min(size, stream.count - offset)
            chunks.append(Array(stream[offset..<(offset + n)]))
            offset += n
            size = size % 997 + 37
        }
        let (outcomes, reader) = read(chunks)
        #expect(outcomes.count == 500)
        #expect(outcomes.allSatisfy { $0 == .request(method: "POST", path: "/publish", body: b("abc")) })
        #expect(reader.bufferedBytes == 0)
    }

    /// A chunked body that trickles in must not cost time quadratic in its length.
    @Test(.timeLimit(.minutes(1)))
    func chunkedBodyArrivingInSmallPiecesIsLinear() {
        let size = 1 << 20
        var request = b("POST /backdoor HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        request += b(String(size, radix: 16) + "\r\n") + [UInt8](repeating: 0x78, count: size) + b("\r\n0\r\n\r\n")
        var reader = RequestReader(maxHeaderBytes: 8192, maxBodyBytes: size)
        let start = ContinuousClock.now
        var got: HTTPRequest?
        var offset = 0
        while offset < request.count {
            let n = min(256, request.count - offset)
            request[offset..<(offset + n)].withUnsafeBytes { reader.append($0) }
            offset += n
            if case .request(let r) = reader.next() { got = r }
        }
        let elapsed = ContinuousClock.now - start
        #expect(got?.body.count == size)
        #expect(elapsed < .seconds(3), "1 MiB chunked body in 256-byte reads took \(elapsed)")
    }
}
