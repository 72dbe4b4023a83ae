import QriTestSupport
import QriGateway
import Testing

// MARK: BER encoding, done by hand

/// A definite BER length: short form below 128, else long form with the fewest octets, or
/// with exactly `octets` of them when given (valid BER, not DER).
private func berLength(_ n: Int, octets: Int? = nil) -> [UInt8] {
    if octets == nil && n < 0x80 { return [UInt8(n)] }
    var bytes: [UInt8] = []
    var rest = n
    while rest > 0 {
        bytes.insert(UInt8(rest & 0xFF), at: 0)
        rest >>= 8
    }
    if let octets {
        while bytes.count < octets { bytes.insert(0, at: 0) }
    }
    return [0x80 | UInt8(bytes.count)] + bytes
}

private func tlv(_ tag: UInt8, _ content: [UInt8], octets: Int? = nil) -> [UInt8] {
    [tag] + berLength(content.count, octets: octets) + content
}

private func frame(_ peer: [UInt8], _ checksum: [UInt8], _ message: [UInt8], octets: Int? = nil) -> [UInt8] {
    tlv(0x30, tlv(0x04, peer, octets: octets) + tlv(0x04, checksum, octets: octets) + tlv(0x04, message, octets: octets),
        octets: octets)
}

private func frame(_ peer: String, _ checksum: String, _ message: [UInt8]) -> [UInt8] {
    frame(Array(peer.utf8), Array(checksum.utf8), message)
}

/// A decoded message, copied out of the decoder's buffer.
private struct Decoded: Equatable {
    let pair: PairKey
    let message: [UInt8]
}

private func feed(_ decoder: inout IngestFrameDecoder, _ bytes: [UInt8], into out: inout [Decoded]) throws(IngestFrameError) {
    var got: [Decoded] = []
    let result = bytes.withUnsafeBytes { raw in
        Result { () throws(IngestFrameError) in try decoder.feed(raw) { got.append(Decoded(pair: $0.pair, message: Array($0.message))) } }
    }
    out += got
    try result.get()
}

/// Decodes `bytes` fed in one piece.
private func decodeAll(_ bytes: [UInt8], maxFrameBytes: Int = 1 << 20) throws(IngestFrameError) -> [Decoded] {
    var decoder = IngestFrameDecoder(maxFrameBytes: maxFrameBytes)
    var out: [Decoded] = []
    try feed(&decoder, bytes, into: &out)
    #expect(decoder.bufferedBytes == 0)
    return out
}

private func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

private func expectError(_ bytes: [UInt8], maxFrameBytes: Int = 1 << 20, _ check: (IngestFrameError) -> Bool,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let messages = try decodeAll(bytes, maxFrameBytes: maxFrameBytes)
        Issue.record("expected an error, got \(messages.count) message(s)", sourceLocation: sourceLocation)
    } catch {
        #expect(check(error), "got \(error)", sourceLocation: sourceLocation)
    }
}

private func isMalformed(_ error: IngestFrameError) -> Bool {
    if case .malformed = error { return true }
    return false
}

@Suite struct IngestFrameDecoderTests {
    @Test(arguments: [0, 1, 127, 128, 255, 256, 70000])
    func messageSizes(_ size: Int) throws {
        let body = pattern(size, seed: UInt64(size))
        let bytes = frame("peer-1", "checksum-1", body)
        if size + 20 < 128 {
            #expect(bytes[1] < 0x80, "short form outer length expected")
        } else {
            #expect(bytes[1] > 0x80, "long form outer length expected")
        }
        let messages = try decodeAll(bytes)
        #expect(messages.count == 1)
        #expect(messages.first?.pair == PairKey(peer: "peer-1", checksum: "checksum-1"))
        #expect(messages.first?.message == body)
    }

    @Test func emptyPeerChecksumAndMessage() throws {
        let messages = try decodeAll(frame([], [], []))
        #expect(messages.map(\.pair) == [PairKey(peer: [], checksum: [])])
        #expect(messages.map(\.message) == [[]])
    }

    @Test(arguments: [1, 2, 4])
    func nonMinimalLongFormLengths(_ octets: Int) throws {
        // qri-compatible senders may use the long form for short lengths: valid BER.
        let bytes = frame(Array("p".utf8), Array("s".utf8), Array("hello".utf8), octets: octets)
        let messages = try decodeAll(bytes)
        #expect(messages.map(\.message) == [Array("hello".utf8)])
    }

    @Test func oneFrameSplitAtEveryByte() throws {
        let bytes = frame("peer", "sum", Array("a message\r\nwith lines".utf8))
        let expected = try decodeAll(bytes)
        #expect(expected.count == 1)
        // Two pieces, split at every position.
        for cut in 0...bytes.count {
            var decoder = IngestFrameDecoder(maxFrameBytes: 1 << 20)
            var out: [Decoded] = []
            try feed(&decoder, Array(bytes[..<cut]), into: &out)
            #expect(out.isEmpty || cut == bytes.count)
            try feed(&decoder, Array(bytes[cut...]), into: &out)
            #expect(out == expected, "split at \(cut)")
            #expect(decoder.bufferedBytes == 0)
        }
        // One byte at a time.
        var decoder = IngestFrameDecoder(maxFrameBytes: 1 << 20)
        var out: [Decoded] = []
        for (i, byte) in bytes.enumerated() {
            try feed(&decoder, [byte], into: &out)
            #expect(out.isEmpty == (i < bytes.count - 1))
            #expect(decoder.bufferedBytes == (i < bytes.count - 1 ? i + 1 : 0))
        }
        #expect(out == expected)
    }

    @Test func bigFrameInRandomChunks() throws {
        let body = pattern(300_000, seed: 42)
        let bytes = frame(Array("peer".utf8), Array("sum".utf8), body)
        var rng = SplitMix64(seed: 99)
        for _ in 0..<5 {
            var decoder = IngestFrameDecoder(maxFrameBytes: 1 << 20)
            var out: [Decoded] = []
            var offset = 0
            while offset < bytes.count {
                let n = min(bytes.count - offset, 1 + Int(rng.next() % 20_000))
                try feed(&decoder, Array(bytes[offset..<(offset + n)]), into: &out)
                offset += n
                if offset < bytes.count { #expect(out.isEmpty) }
            }
            #expect(out.count == 1)
            #expect(out.first?.message == body)
            #expect(decoder.bufferedBytes == 0)
        }
    }

    @Test func manyFramesInOneFeed() throws {
        var rng = SplitMix64(seed: 7)
        var bytes: [UInt8] = []
        var expectedPairs: [PairKey] = []
        var expectedMessages: [[UInt8]] = []
        for i in 0..<500 {
            let size = Int(rng.next() % (i % 50 == 0 ? 5000 : 200))
            let body = pattern(size, seed: UInt64(i))
            let peer = "peer-\(i % 7)", checksum = "sum-\(i % 3)"
            bytes += frame(peer, checksum, body)
            expectedPairs.append(PairKey(peer: peer, checksum: checksum))
            expectedMessages.append(body)
        }
        let all = try decodeAll(bytes)
        #expect(all.map(\.pair) == expectedPairs)
        #expect(all.map(\.message) == expectedMessages)

        // The same stream in random chunks, frames split anywhere.
        var decoder = IngestFrameDecoder(maxFrameBytes: 1 << 20)
        var out: [Decoded] = []
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, 1 + Int(rng.next() % 700))
            try feed(&decoder, Array(bytes[offset..<(offset + n)]), into: &out)
            offset += n
        }
        #expect(out == all)
        #expect(decoder.bufferedBytes == 0)
    }

    @Test func completeFramesBeforeAnIncompleteOneAreDelivered() throws {
        let a = frame("a", "1", Array("first".utf8)), b = frame("b", "2", Array("second".utf8))
        var decoder = IngestFrameDecoder(maxFrameBytes: 1 << 20)
        var out: [Decoded] = []
        try feed(&decoder, a + b.prefix(5), into: &out)
        #expect(out.map(\.message) == [Array("first".utf8)])
        #expect(decoder.bufferedBytes == 5)
        try feed(&decoder, Array(b.dropFirst(5)) + a, into: &out)
        #expect(out.map(\.message) == [Array("first".utf8), Array("second".utf8), Array("first".utf8)])
    }

    // MARK: Errors

    @Test(arguments: [UInt8(0x00), 0x04, 0x31, 0x10, 0x47, 0xFF])
    func garbageFirstByte(_ tag: UInt8) {
        expectError([tag, 0x03, 0x04, 0x01, 0x41]) { $0 == .notASequence(tag) }
        // Also when it is the only byte that has arrived, and after good frames.
        expectError([tag]) { $0 == .notASequence(tag) }
        expectError(frame("p", "s", [1]) + [tag]) { $0 == .notASequence(tag) }
    }

    @Test func garbageAfterGoodFramesDeliversTheGoodOnes() {
        var decoder = IngestFrameDecoder(maxFrameBytes: 1 << 20)
        var out: [Decoded] = []
        #expect(throws: IngestFrameError.notASequence(0x47)) {
            try feed(&decoder, frame("p", "s", [1]) + frame("p", "s", [2]) + Array("GET / HTTP/1.1\r\n".utf8), into: &out)
        }
        #expect(out.map(\.message) == [[1], [2]])
    }

    @Test func indefiniteLength() {
        expectError([0x30, 0x80]) { $0 == .indefiniteLength }
        expectError([0x30, 0x80, 0x04, 0x01, 0x41, 0x04, 0x01, 0x42, 0x04, 0x01, 0x43, 0x00, 0x00]) { $0 == .indefiniteLength }
    }

    @Test func constructedOctetStringInsideADefiniteFrame() throws {
        // Framing needs only the outer length to be definite; inside, swift-asn1 reads BER,
        // where a constructed OCTET STRING (even of indefinite length) is its segments joined.
        let inner: [UInt8] = [0x24, 0x80, 0x04, 0x01, 0x41, 0x04, 0x01, 0x5A, 0x00, 0x00] + tlv(0x04, [0x42]) + tlv(0x04, [0x43])
        let messages = try decodeAll(tlv(0x30, inner))
        #expect(messages.map(\.pair) == [PairKey(peer: "AZ", checksum: "B")])
        #expect(messages.map(\.message) == [[0x43]])
    }

    @Test func tooLargeBeforeAllBytesArrive() {
        // Only the header of a 300-byte frame, with a 100-byte cap: refused at once.
        var decoder = IngestFrameDecoder(maxFrameBytes: 100)
        var out: [Decoded] = []
        let whole = frame(Array("p".utf8), Array("s".utf8), pattern(290, seed: 1))
        #expect(throws: IngestFrameError.tooLarge(whole.count)) {
            try feed(&decoder, Array(whole.prefix(4)), into: &out)
        }
        #expect(out.isEmpty)
        // Even when the header itself arrives byte by byte.
        var second = IngestFrameDecoder(maxFrameBytes: 100)
        #expect(throws: IngestFrameError.tooLarge(whole.count)) {
            for byte in whole.prefix(4) { try feed(&second, [byte], into: &out) }
        }
    }

    @Test func hugeDeclaredLengthsAreTooLarge() {
        expectError([0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]) { if case .tooLarge = $0 { true } else { false } }
        expectError([0x30, 0x88, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) { if case .tooLarge = $0 { true } else { false } }
        expectError([0x30, 0xFF]) { _ in true }
    }

    @Test func frameAtTheCapIsAccepted() throws {
        let bytes = frame(Array("p".utf8), Array("s".utf8), pattern(200, seed: 3))
        #expect(try decodeAll(bytes, maxFrameBytes: bytes.count).count == 1)
        expectError(bytes, maxFrameBytes: bytes.count - 1) { $0 == .tooLarge(bytes.count) }
    }

    @Test func wrongInnerTags() {
        let p = tlv(0x04, Array("p".utf8)), s = tlv(0x04, Array("s".utf8)), m = tlv(0x04, Array("m".utf8))
        expectError(tlv(0x30, tlv(0x0C, Array("p".utf8)) + s + m), isMalformed)
        expectError(tlv(0x30, p + tlv(0x02, [0x05]) + m), isMalformed)
        expectError(tlv(0x30, p + s + tlv(0x30, m)), isMalformed)
        expectError(tlv(0x30, p + s + tlv(0x05, [])), isMalformed)
    }

    @Test func twoFields() {
        expectError(tlv(0x30, tlv(0x04, Array("p".utf8)) + tlv(0x04, Array("s".utf8))), isMalformed)
    }

    @Test func fourFields() {
        let f = tlv(0x04, Array("x".utf8))
        expectError(tlv(0x30, f + f + f + f), isMalformed)
    }

    @Test func emptySequence() {
        expectError([0x30, 0x00], isMalformed)
    }

    @Test func innerLengthsThatDoNotAddUp() {
        // Inner field claims more bytes than the frame holds.
        expectError([0x30, 0x09, 0x04, 0x01, 0x41, 0x04, 0x01, 0x42, 0x04, 0x05, 0x43], isMalformed)
        // Trailing bytes inside the frame after the third field.
        expectError([0x30, 0x0B, 0x04, 0x01, 0x41, 0x04, 0x01, 0x42, 0x04, 0x01, 0x43, 0x00, 0x00], isMalformed)
    }

    @Test func errorDescriptionsSayWhat() {
        #expect(IngestFrameError.notASequence(0x47).description.contains("0x47"))
        #expect(IngestFrameError.tooLarge(5000).description.contains("5000"))
        #expect(IngestFrameError.indefiniteLength.description.contains("indefinite"))
    }
}
