import QriHTTP
import Testing

/// Parses `text` with a fresh parser, all at once.
private func parse(_ text: String, limit: Int = 8192) -> HeadParseResult {
    parse(Array(text.utf8), limit: limit)
}

private func parse(_ bytes: [UInt8], limit: Int = 8192) -> HeadParseResult {
    var parser = RequestHeadParser(limit: limit)
    return bytes.withUnsafeBytes { parser.parse($0) }
}

/// Feeds `bytes` prefix by prefix to one parser, as a connection buffer grows one byte at a
/// time; returns the result of every call.
private func parseByteByByte(_ bytes: [UInt8], limit: Int = 8192) -> [HeadParseResult] {
    var parser = RequestHeadParser(limit: limit)
    var results: [HeadParseResult] = []
    for end in 1...bytes.count {
        let prefix = Array(bytes[..<end])
        results.append(prefix.withUnsafeBytes { parser.parse($0) })
        if case .incomplete = results.last! { continue }
        break
    }
    return results
}

private func head(_ result: HeadParseResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> (RequestHead, Int) {
    guard case .complete(let head, let length) = result else {
        Issue.record("expected a complete head, got \(result)", sourceLocation: sourceLocation)
        throw ParseFailed()
    }
    return (head, length)
}

private struct ParseFailed: Error {}

private func isBadRequest(_ result: HeadParseResult) -> Bool {
    if case .failed(.badRequest) = result { return true }
    return false
}

private func s(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Valid heads, each with what it must parse to.
private let validHeads: [(text: String, method: String, path: String, query: String, minor: Int, headers: [(String, String)])] = [
    ("GET /stream?p=peer&s=sum HTTP/1.1\r\nHost: example.com\r\nAccept: text/event-stream\r\n\r\n",
     "GET", "/stream", "p=peer&s=sum", 1, [("host", "example.com"), ("accept", "text/event-stream")]),
    ("GET / HTTP/1.0\r\n\r\n", "GET", "/", "", 0, []),
    ("POST /publish HTTP/1.0\r\nContent-Length: 3\r\n\r\n", "POST", "/publish", "", 0, [("content-length", "3")]),
    ("GET /x HTTP/1.1\r\nHOST: a\r\nX-Mixed-Case: VaLuE\r\n\r\n", "GET", "/x", "", 1, [("host", "a"), ("x-mixed-case", "VaLuE")]),
    ("\r\n\r\nGET /after-empty-lines HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/after-empty-lines", "", 1, [("host", "a")]),
    ("GET http://example.com/stream?p=1&s=2 HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "/stream", "p=1&s=2", 1, [("host", "example.com")]),
    ("GET HTTPS://Example.com?p=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "/", "p=1", 1, [("host", "example.com")]),
    ("GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "/", "", 1, [("host", "example.com")]),
    ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", "", 1, [("host", "a")]),
    ("GET /v HTTP/1.1\r\nHost: a\r\nX:   padded value \t \r\nEmpty:\r\nTab:\tx\ty\r\n\r\n", "GET", "/v", "", 1,
     [("host", "a"), ("x", "padded value"), ("empty", ""), ("tab", "x\ty")]),
    ("GET /utf8 HTTP/1.1\r\nHost: a\r\nX: caf\u{e9}\r\n\r\n", "GET", "/utf8", "", 1, [("host", "a"), ("x", "caf\u{e9}")]),
]

@Suite struct RequestHeadParserTests {
    @Test(arguments: validHeads.indices)
    func validHead(_ index: Int) throws {
        let expected = validHeads[index]
        let (head, length) = try head(parse(expected.text))
        #expect(s(head.method) == expected.method)
        #expect(s(head.path) == expected.path)
        #expect(s(head.query) == expected.query)
        #expect(head.minorVersion == expected.minor)
        #expect(head.headers.map { s($0.name) } == expected.headers.map(\.0))
        #expect(head.headers.map { s($0.value) } == expected.headers.map(\.1))
        #expect(length == expected.text.utf8.count)
    }

    @Test func headerLookupIsCaseInsensitive() throws {
        let (head, _) = try head(parse("GET / HTTP/1.1\r\nhOsT: example.com\r\nX-A: 1\r\nx-a: 2\r\n\r\n"))
        #expect(head.header("host") == Array("example.com".utf8))
        #expect(head.headers("x-a") == [Array("1".utf8), Array("2".utf8)])
        #expect(head.header("missing") == nil)
        #expect(head.methodIs("GET"))
        #expect(head.pathIs("/"))
    }

    @Test func lengthStopsAtTheEndOfTheHead() throws {
        let headText = "POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
        let (_, length) = try head(parse(headText + "hello" + "GET / HTTP/1.1\r\n"))
        #expect(length == headText.utf8.count)
    }

    @Test func fragmentIsDropped() throws {
        let (head, _) = try head(parse("GET /a?b=c#frag HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(s(head.path) == "/a")
        #expect(s(head.query) == "b=c")
    }

    @Test(arguments: validHeads.indices)
    func splitAtEveryByteBoundary(_ index: Int) throws {
        let bytes = Array(validHeads[index].text.utf8)
        let whole = parse(bytes)
        let results = parseByteByByte(bytes)
        #expect(results.count == bytes.count, "a head finished early, after \(results.count) of \(bytes.count) bytes")
        for (i, result) in results.dropLast().enumerated() {
            #expect(result == .incomplete, "prefix of \(i + 1) bytes gave \(result)")
        }
        #expect(results.last == whole)
    }

    @Test func splitAtEveryByteBoundaryThenReset() throws {
        // One parser, two heads: reset() between them makes the second parse like the first.
        var parser = RequestHeadParser(limit: 8192)
        let first = Array("GET /one HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        let second = Array("GET /two HTTP/1.1\r\nHost: b\r\n\r\n".utf8)
        for bytes in [first, second] {
            var last = HeadParseResult.incomplete
            for end in 1...bytes.count {
                last = Array(bytes[..<end]).withUnsafeBytes { parser.parse($0) }
                if end < bytes.count { #expect(last == .incomplete) }
            }
            #expect(last == parse(bytes))
            parser.reset()
        }
    }

    // MARK: Malformed

    static let malformed: [(name: String, text: String)] = [
        ("bare CR in header value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
        ("bare CR in request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("bare CR ending a line", "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\r\n\r\n"),
        ("bare LF ending the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n"),
        ("bare LF ending a header", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"),
        ("bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\n\n"),
        ("obs-fold with space", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"),
        ("obs-fold with tab", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n"),
        ("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        ("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"),
        ("missing colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n"),
        ("empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"),
        ("bad header name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n"),
        ("bad method token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("method with slash", "GE/T / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("two spaces in request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("trailing space in request line", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
        ("missing version", "GET /\r\nHost: a\r\n\r\n"),
        ("control char in target", "GET /a\u{01}b HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("relative target", "GET stream HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("non-http absolute target", "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("control char in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{01}b\r\n\r\n"),
        ("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{00}b\r\n\r\n"),
        ("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{7F}b\r\n\r\n"),
        ("escape in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \u{1B}[31m\r\n\r\n"),
        ("missing Host on HTTP/1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        ("two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("two Host headers on HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"),
        ("lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n"),
        ("version garbage", "GET / HTTX/1.1\r\nHost: a\r\n\r\n"),
        ("version without minor", "GET / HTTP/1\r\nHost: a\r\n\r\n"),
        ("version with letters", "GET / HTTP/1.x\r\nHost: a\r\n\r\n"),
    ]

    @Test(arguments: malformed.indices)
    func malformedIsBadRequest(_ index: Int) {
        let (name, text) = Self.malformed[index]
        let result = parse(text)
        #expect(isBadRequest(result), "\(name): got \(result)")
    }

    @Test(arguments: malformed.indices)
    func malformedIsBadRequestByteByByte(_ index: Int) {
        let (name, text) = Self.malformed[index]
        let results = parseByteByByte(Array(text.utf8))
        #expect(isBadRequest(results.last!), "\(name): got \(results.last!)")
    }

    @Test(arguments: ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9"])
    func unsupportedVersion(_ version: String) {
        #expect(parse("GET / \(version)\r\nHost: a\r\n\r\n") == .failed(.versionNotSupported))
    }

    @Test func http2Preface() {
        let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        #expect(parse(preface) == .failed(.versionNotSupported))
        // Before its end arrives, too: the preface is recognized from its first 12 bytes.
        #expect(parse("PRI * HTTP/2") == .failed(.versionNotSupported))
        let results = parseByteByByte(Array(preface.utf8))
        #expect(results.last == .failed(.versionNotSupported))
        #expect(results.count <= 16)
        // A prefix of it is still just incomplete.
        #expect(parse("PRI * HTT") == .incomplete)
    }

    // MARK: Size limit

    @Test func headerTooLargeWhileIncomplete() {
        let limit = 256
        let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nX: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 400)
        #expect(parse(bytes, limit: limit) == .failed(.headerTooLarge))
        // Byte by byte it fails as soon as it cannot fit anymore, not later.
        let results = parseByteByByte(bytes, limit: limit)
        #expect(results.last == .failed(.headerTooLarge))
        #expect(results.count <= limit + 3)
    }

    @Test func headerTooLargeWhenComplete() {
        let limit = 256
        let text = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "a", count: 400) + "\r\n\r\n"
        #expect(parse(text, limit: limit) == .failed(.headerTooLarge))
    }

    @Test func headerLimitBoundary() throws {
        // The limit counts the request line and the header lines; the final empty line is free.
        let limit = 256
        let start = "GET / HTTP/1.1\r\nHost: a\r\nX: "
        let fill = limit - start.utf8.count - 2
        let atLimit = start + String(repeating: "a", count: fill) + "\r\n\r\n"
        let overLimit = start + String(repeating: "a", count: fill + 1) + "\r\n\r\n"
        _ = try head(parse(atLimit, limit: limit))
        #expect(parse(overLimit, limit: limit) == .failed(.headerTooLarge))
        let results = parseByteByByte(Array(atLimit.utf8), limit: limit)
        #expect(results.dropLast().allSatisfy { $0 == .incomplete })
        _ = try head(results.last!)
    }

    @Test func incompleteStaysIncomplete() {
        #expect(parse("") == .incomplete)
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\n") == .incomplete)
        #expect(parse("\r\n\r\n\r\n") == .incomplete)
    }

    @Test func errorStatuses() {
        #expect(HTTPError.badRequest("x").status.code == 400)
        #expect(HTTPError.headerTooLarge.status.code == 431)
        #expect(HTTPError.bodyTooLarge.status.code == 413)
        #expect(HTTPError.notImplemented("gzip").status.code == 501)
        #expect(HTTPError.versionNotSupported.status.code == 505)
    }
}
