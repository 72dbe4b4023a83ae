// libFuzzer target: the ingest frame decoder (our BER framing, swift-asn1 inside). The input
// is fed whole and in pieces whose sizes the input chooses; both must give the same messages
// (or the same error), and no message may come from a frame over the cap.
import FuzzSupport
import QriGateway

func decode(_ bytes: [UInt8], pieces: Int) -> [String] {
    var decoder = IngestFrameDecoder(maxFrameBytes: 2048)
    var out: [String] = []
    let size = max(1, bytes.count / max(pieces, 1))
    var start = 0
    while start < bytes.count {
        let end = min(bytes.count, start + size)
        do {
            try bytes[start..<end].withUnsafeBytes { buffer in
                try decoder.feed(buffer) { message in
                    precondition(message.pair.peer.count + message.pair.checksum.count + message.message.count <= 2048)
                    out.append("\(message.pair.peer.count)/\(message.pair.checksum.count)/\(message.message.count)")
                }
            }
        } catch {
            out.append("error")
            return out
        }
        start = end
    }
    return out
}

func fuzz(_ data: UnsafeRawBufferPointer) {
    let bytes = Array(data)
    let whole = decode(bytes, pieces: 1)
    let pieces = bytes.first.map { Int($0 % 16) + 2 } ?? 2
    let split = decode(bytes, pieces: pieces)
    precondition(whole == split, "result depends on the split: \(whole) vs \(split)")
}

#if FUZZING
@_cdecl("FuzzIngestDecoder_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzz)
}
#else
@main
struct Main {
    static func main() { explainFuzzTarget() }
}
#endif
