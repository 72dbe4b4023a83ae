import QriHTTP
import Testing

private func framing(_ headers: [(String, String)], minor: Int = 1) -> Result<BodyFraming, HTTPError> {
    let head = RequestHead(method: Array("POST".utf8), path: Array("/publish".utf8), query: [], minorVersion: minor,
                           headers: [(Array("host".utf8), Array("a".utf8))]
                               + headers.map { (Array($0.0.utf8), Array($0.1.utf8)) })
    return head.bodyFraming()
}

private func isBadRequest(_ result: Result<BodyFraming, HTTPError>) -> Bool {
    if case .failure(.badRequest) = result { return true }
    return false
}

@Suite struct BodyFramingTests {
    @Test func none() {
        #expect(framing([]) == .success(.none))
        #expect(framing([], minor: 0) == .success(.none))
    }

    @Test func contentLength() {
        #expect(framing([("content-length", "5")]) == .success(.contentLength(5)))
        #expect(framing([("content-length", "1048576")]) == .success(.contentLength(1_048_576)))
        #expect(framing([("content-length", "005")]) == .success(.contentLength(5)))
        #expect(framing([("content-length", "5")], minor: 0) == .success(.contentLength(5)))
    }

    @Test func zeroContentLengthIsNoBody() {
        #expect(framing([("content-length", "0")]) == .success(.none))
    }

    @Test func chunked() {
        #expect(framing([("transfer-encoding", "chunked")]) == .success(.chunked))
        #expect(framing([("transfer-encoding", "Chunked")]) == .success(.chunked))
        #expect(framing([("transfer-encoding", " chunked ")]) == .success(.chunked))
    }

    @Test func contentLengthWithTransferEncodingIsBadRequest() {
        #expect(isBadRequest(framing([("content-length", "5"), ("transfer-encoding", "chunked")])))
        #expect(isBadRequest(framing([("transfer-encoding", "chunked"), ("content-length", "0")])))
    }

    @Test func differingContentLengthsAreBadRequest() {
        #expect(isBadRequest(framing([("content-length", "5"), ("content-length", "6")])))
        #expect(isBadRequest(framing([("content-length", "5, 6")])))
        #expect(isBadRequest(framing([("content-length", "5"), ("content-length", "5, 7")])))
    }

    @Test func sameRepeatedContentLengthIsAccepted() {
        #expect(framing([("content-length", "5"), ("content-length", "5")]) == .success(.contentLength(5)))
        #expect(framing([("content-length", "5, 5")]) == .success(.contentLength(5)))
        #expect(framing([("content-length", "5,5")]) == .success(.contentLength(5)))
    }

    @Test(arguments: ["", " ", "abc", "-1", "+5", "5a", "0x10", "5.0", "5 5", "1e3", "5,", ",5", "5,,5",
                      "1234567890123456789", "\u{0663}"])
    func malformedContentLengthIsBadRequest(_ value: String) {
        #expect(isBadRequest(framing([("content-length", value)])), "Content-Length: '\(value)'")
    }

    @Test func otherTransferCodingsAreNotImplemented() {
        #expect(framing([("transfer-encoding", "gzip")]) == .failure(.notImplemented("gzip")))
        #expect(framing([("transfer-encoding", "identity")]) == .failure(.notImplemented("identity")))
        #expect(framing([("transfer-encoding", "chunked, gzip")]) == .failure(.notImplemented("gzip")))
        // Chunked last with another coding before it: the other coding is what we cannot do.
        if case .failure(.notImplemented) = framing([("transfer-encoding", "gzip, chunked")]) {} else {
            Issue.record("gzip, chunked should be 501")
        }
        if case .failure(.notImplemented) = framing([("transfer-encoding", "gzip"), ("transfer-encoding", "chunked")]) {} else {
            Issue.record("gzip then chunked in two headers should be 501")
        }
    }

    @Test func repeatedOrEmptyChunkedIsBadRequest() {
        #expect(isBadRequest(framing([("transfer-encoding", "chunked, chunked")])))
        #expect(isBadRequest(framing([("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")])))
        #expect(isBadRequest(framing([("transfer-encoding", "")])))
        #expect(isBadRequest(framing([("transfer-encoding", "chunked,")])))
    }

    @Test func transferEncodingOnHTTP10IsBadRequest() {
        #expect(isBadRequest(framing([("transfer-encoding", "chunked")], minor: 0)))
        #expect(isBadRequest(framing([("transfer-encoding", "gzip")], minor: 0)))
    }

    @Test func framingFromAParsedHead() {
        var parser = RequestHeadParser(limit: 8192)
        let text = "POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"
        let result = Array(text.utf8).withUnsafeBytes { parser.parse($0) }
        guard case .complete(let head, _) = result else {
            Issue.record("got \(result)")
            return
        }
        #expect(head.bodyFraming() == .success(.contentLength(12)))
    }
}
