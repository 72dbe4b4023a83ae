// libFuzzer target: the SSE encoder round trip. Whatever the message bytes, the encoded
// event parses back (the way a browser's EventSource does) to one event with the same id and
// the message with its line breaks normalized to LF.
import FuzzSupport
import QriHTTP

/// Parses one event as WHATWG HTML §9.2.6 says: lines end at CRLF, CR or LF; `data:` values
/// (one leading space stripped) are joined with LF.
func parseEvent(_ bytes: [UInt8]) -> (id: [UInt8], data: [UInt8], events: Int) {
    var id: [UInt8] = [], data: [[UInt8]] = [], events = 0
    var line: [UInt8] = []
    var i = 0
    func field(_ line: [UInt8]) {
        if line.isEmpty { events += 1; return }
        let colon = line.firstIndex(of: 0x3A) ?? line.count
        let name = Array(line[..<colon])
        var value = colon < line.count ? Array(line[(colon + 1)...]) : []
        if value.first == 0x20 { value.removeFirst() }
        if name == Array("data".utf8) { data.append(value) }
        if name == Array("id".utf8) { id = value }
    }
    while i < bytes.count {
        let b = bytes[i]
        if b == 0x0D || b == 0x0A {
            field(line)
            line = []
            if b == 0x0D && i + 1 < bytes.count && bytes[i + 1] == 0x0A { i += 1 }
        } else {
            line.append(b)
        }
        i += 1
    }
    return (id, Array(data.joined(separator: [0x0A])), events)
}

func normalized(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        if bytes[i] == 0x0D {
            out.append(0x0A)
            if i + 1 < bytes.count && bytes[i + 1] == 0x0A { i += 1 }
        } else {
            out.append(bytes[i])
        }
        i += 1
    }
    return out
}

func fuzz(_ data: UnsafeRawBufferPointer) {
    let message = Array(data)
    let id = UInt64(message.count) &* 0x9E37_79B9_7F4A_7C15
    var encoded: [UInt8] = []
    SSEEncoder.appendEvent(id: id, data: message, to: &encoded)
    let parsed = parseEvent(encoded)
    precondition(parsed.events == 1, "one event expected, got \(parsed.events)")
    precondition(SSEEncoder.parseID(parsed.id) == id, "id did not survive")
    precondition(parsed.data == normalized(message), "data did not survive")
}

#if FUZZING
@_cdecl("FuzzSSEEncoder_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzz)
}
#else
@main
struct Main {
    static func main() { explainFuzzTarget() }
}
#endif
