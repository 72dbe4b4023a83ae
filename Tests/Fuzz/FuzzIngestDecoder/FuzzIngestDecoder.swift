// libFuzzer target: the ingest frame decoder (our BER framing, swift-asn1 inside). The input
// is fed whole and in pieces whose sizes the input chooses; both must give the same messages
// (or the same error), and no message may come from a frame over the cap.
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
/// libFuzzer's entry point when a program brings its own `main`, as SwiftPM executables do.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzz(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("FuzzIngestDecoder_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return runFuzzerDriver(&argc, &argv, fuzzerTestOneInput)
}
#else
@main
struct Main {
    static func main() { print("a libFuzzer target: build and run it with `make fuzz`") }
}
#endif
