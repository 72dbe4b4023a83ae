import QriTestSupport
import QriHTTP
import Testing

private func encode(id: UInt64 = 1, name: String? = nil, _ data: [UInt8]) -> String {
    var out: [UInt8] = []
    SSEEncoder.appendEvent(id: id, name: name.map { Array($0.utf8) }, data: data, to: &out)
    return String(decoding: out, as: UTF8.self)
}

private func encode(id: UInt64 = 1, name: String? = nil, _ data: String) -> String {
    encode(id: id, name: name, Array(data.utf8))
}

/// One event as a browser's EventSource dispatches it.
struct BrowserEvent: Equatable {
    var type: [UInt8]
    var data: [UInt8]
    var lastEventID: [UInt8]
}

/// The WHATWG HTML event-stream interpretation (§9.2.6), on bytes: lines end at CRLF, CR or
/// LF; an empty line dispatches; `field: value` with one leading space stripped; `data`
/// lines are joined with LF and the final LF removed; an event with empty data is not
/// dispatched. Returns the dispatched events and the bytes after the last complete line.
func browserDecode(_ stream: [UInt8]) -> (events: [BrowserEvent], rest: [UInt8]) {
    var events: [BrowserEvent] = []
    var data: [UInt8] = []
    var type: [UInt8] = []
    var lastEventID: [UInt8] = []
    var i = 0
    var lineStart = 0
    func processLine(_ line: ArraySlice<UInt8>) {
        if line.isEmpty {
            if !data.isEmpty {
                if data.last == 0x0A { data.removeLast() }
                events.append(BrowserEvent(type: type.isEmpty ? Array("message".utf8) : type, data: data, lastEventID: lastEventID))
            } else if data.isEmpty && !type.isEmpty {
                // Nothing dispatched; the buffers are reset all the same.
            }
            data = []
            type = []
            return
        }
        if line.first == 0x3A { return }
        let field: ArraySlice<UInt8>
        var value: ArraySlice<UInt8>
        if let colon = line.firstIndex(of: 0x3A) {
            field = line[..<colon]
            value = line[(colon + 1)...]
            if value.first == 0x20 { value = value.dropFirst() }
        } else {
            field = line
            value = []
        }
        switch Array(field) {
        case Array("data".utf8): data += value; data.append(0x0A)
        case Array("event".utf8): type = Array(value)
        case Array("id".utf8): if !value.contains(0) { lastEventID = Array(value) }
        default: break
        }
    }
    while i < stream.count {
        let b = stream[i]
        if b == 0x0D || b == 0x0A {
            // A CR at the very end might be the first half of a CRLF: leave it for later.
            if b == 0x0D && i + 1 == stream.count { break }
            processLine(stream[lineStart..<i])
            i += (b == 0x0D && stream[i + 1] == 0x0A) ? 2 : 1
            lineStart = i
        } else {
            i += 1
        }
    }
    return (events, Array(stream[lineStart...]))
}

/// What a browser's `event.data` is for `input`: line breaks become LF.
func normalizedLineBreaks(_ input: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < input.count {
        if input[i] == 0x0D {
            out.append(0x0A)
            i += (i + 1 < input.count && input[i + 1] == 0x0A) ? 2 : 1
        } else {
            out.append(input[i])
            i += 1
        }
    }
    return out
}

@Suite struct SSEEncoderTests {
    @Test func plainData() {
        #expect(encode("hello") == "id: 1\ndata: hello\n\n")
    }

    @Test func lineBreaksSplitDataLines() {
        #expect(encode("a\rb") == "id: 1\ndata: a\ndata: b\n\n")
        #expect(encode("a\nb") == "id: 1\ndata: a\ndata: b\n\n")
        #expect(encode("a\r\nb") == "id: 1\ndata: a\ndata: b\n\n")
        #expect(encode("a\n\rb") == "id: 1\ndata: a\ndata: \ndata: b\n\n")
        #expect(encode("a\r\rb") == "id: 1\ndata: a\ndata: \ndata: b\n\n")
        #expect(encode("a\r\n\r\nb") == "id: 1\ndata: a\ndata: \ndata: b\n\n")
    }

    @Test func trailingAndLeadingNewlines() {
        #expect(encode("a\n") == "id: 1\ndata: a\ndata: \n\n")
        #expect(encode("a\r\n") == "id: 1\ndata: a\ndata: \n\n")
        #expect(encode("\na") == "id: 1\ndata: \ndata: a\n\n")
        #expect(encode("\r") == "id: 1\ndata: \ndata: \n\n")
    }

    @Test func emptyData() {
        #expect(encode("") == "id: 1\ndata: \n\n")
    }

    @Test func dataThatLooksLikeFields() {
        #expect(encode("x\nid: 5\nevent: evil\n\ndata: y") == "id: 1\ndata: x\ndata: id: 5\ndata: event: evil\ndata: \ndata: data: y\n\n")
        #expect(encode(" leading space") == "id: 1\ndata:  leading space\n\n")
    }

    @Test func eventName() {
        #expect(encode(id: 0xabc, name: "gap", "abc") == "id: abc\nevent: gap\ndata: abc\n\n")
        // A name cannot break the framing either.
        #expect(encode(name: "g\r\na\np", "x") == "id: 1\nevent: gap\ndata: x\n\n")
    }

    @Test func hexIDs() {
        #expect(encode(id: 0, "x") == "id: 0\ndata: x\n\n")
        #expect(encode(id: 1, "x") == "id: 1\ndata: x\n\n")
        #expect(encode(id: 0xabc, "x") == "id: abc\ndata: x\n\n")
        #expect(encode(id: 0x10, "x") == "id: 10\ndata: x\n\n")
        #expect(encode(id: 0xf, "x") == "id: f\ndata: x\n\n")
        #expect(encode(id: 0x100000000, "x") == "id: 100000000\ndata: x\n\n")
        #expect(encode(id: UInt64.max, "x") == "id: ffffffffffffffff\ndata: x\n\n")
        #expect(encode(id: 0x0620_1234_5678_9abc, "x") == "id: 62012345678" + "9abc\ndata: x\n\n")
    }

    @Test func hexIDsMatchStringRadix() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let id = rng.next() >> (rng.next() % 64)
            var out: [UInt8] = []
            SSEEncoder.appendHex(id, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == String(id, radix: 16))
            #expect(SSEEncoder.parseID(out) == id)
        }
    }

    @Test func retry() {
        var out: [UInt8] = []
        SSEEncoder.appendRetry(milliseconds: 2000, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "retry: 2000\n\n")
    }

    @Test func idLineAndBodyMakeAnEvent() {
        var parts: [UInt8] = []
        SSEEncoder.appendIDLine(0x2a, to: &parts)
        SSEEncoder.appendBody(data: Array("x\ny".utf8), to: &parts)
        var whole: [UInt8] = []
        SSEEncoder.appendEvent(id: 0x2a, data: Array("x\ny".utf8), to: &whole)
        #expect(parts == whole)
    }

    @Test func parseID() {
        #expect(SSEEncoder.parseID(Array("abc".utf8)) == 0xabc)
        #expect(SSEEncoder.parseID(Array("ABC".utf8)) == 0xabc)
        #expect(SSEEncoder.parseID(Array("aBc".utf8)) == 0xabc)
        #expect(SSEEncoder.parseID(Array("0".utf8)) == 0)
        #expect(SSEEncoder.parseID(Array("0000000000000001".utf8)) == 1)
        #expect(SSEEncoder.parseID(Array("ffffffffffffffff".utf8)) == UInt64.max)
        #expect(SSEEncoder.parseID(Array("FFFFFFFFFFFFFFFF".utf8)) == UInt64.max)
        #expect(SSEEncoder.parseID(Array("10000000000000000".utf8)) == nil)
        #expect(SSEEncoder.parseID(Array("00000000000000001".utf8)) == nil)
        #expect(SSEEncoder.parseID([UInt8]()) == nil)
        for bad in ["g", "xyz", "12 ", " 12", "-1", "+1", "0x1", "1.0", "ab\u{0}", "\u{e9}"] {
            #expect(SSEEncoder.parseID(Array(bad.utf8)) == nil, "'\(bad)'")
        }
    }

    @Test func browserDecodesSimpleEvents() {
        let (events, rest) = browserDecode(Array((encode(id: 0xabc, "a\r\nb") + encode(id: 0xabd, name: "gap", "c")).utf8))
        #expect(rest.isEmpty)
        #expect(events == [
            BrowserEvent(type: Array("message".utf8), data: Array("a\nb".utf8), lastEventID: Array("abc".utf8)),
            BrowserEvent(type: Array("gap".utf8), data: Array("c".utf8), lastEventID: Array("abd".utf8)),
        ])
    }

    /// For random byte strings, the browser gets back exactly the input with CR and CRLF
    /// turned into LF, and no input can end the event early or add a field.
    @Test func roundTripThroughABrowserDecoder() {
        var rng = SplitMix64(seed: 0x5153_4521)
        // Bytes the framing is made of come up often; the rest uniformly.
        let special: [UInt8] = [0x0D, 0x0A, 0x3A, 0x20, 0x00, UInt8(ascii: "d"), UInt8(ascii: "i")]
        var stream: [UInt8] = []
        var expected: [BrowserEvent] = []
        for n in 0..<4000 {
            let length = Int(rng.next() % (n % 10 == 0 ? 300 : 24))
            let input: [UInt8] = (0..<length).map { _ in
                rng.next() % 3 == 0 ? special[Int(rng.next() % UInt64(special.count))] : UInt8(truncatingIfNeeded: rng.next())
            }
            let id = rng.next() >> (rng.next() % 64)
            var one: [UInt8] = []
            SSEEncoder.appendEvent(id: id, data: input, to: &one)
            let hex = Array(String(id, radix: 16).utf8)
            let event = BrowserEvent(type: Array("message".utf8), data: normalizedLineBreaks(input), lastEventID: hex)

            let (events, rest) = browserDecode(one)
            #expect(rest.isEmpty)
            #expect(events == [event], "input \(input)")
            if events != [event] { return }
            stream += one
            expected.append(event)
        }
        // Back to back on one stream, too.
        let (events, rest) = browserDecode(stream)
        #expect(rest.isEmpty)
        #expect(events == expected)
    }
}
