// libFuzzer target: the admin request reader (head parser, Content-Length and chunked
// bodies) fed the input split in two at a point the input itself chooses. Checks that it
// never crashes, never returns a body over the bound, and that the result does not depend on
// how the bytes were split.
import FuzzSupport
import QriHTTP

func readAll(_ chunks: [ArraySlice<UInt8>]) -> [String] {
    var reader = RequestReader(maxHeaderBytes: 1024, maxBodyBytes: 4096)
    var results: [String] = []
    for chunk in chunks {
        chunk.withUnsafeBytes { reader.append($0) }
        loop: while true {
            switch reader.next() {
            case .needMore: break loop
            case .failed(let error): results.append("error \(error.status.code)"); return results
            case .request(let request):
                precondition(request.body.count <= 4096, "body over the bound")
                results.append("\(request.head.method) \(request.head.path) \(request.body.count)")
            }
        }
    }
    return results
}

func fuzz(_ data: UnsafeRawBufferPointer) {
    let bytes = Array(data)
    let whole = readAll([bytes[...]])
    if bytes.count > 1 {
        let cut = Int(bytes[0]) % bytes.count
        let split = readAll([bytes[..<cut], bytes[cut...]])
        precondition(whole == split, "result depends on the split: \(whole) vs \(split)")
    }
}

#if FUZZING
@_cdecl("FuzzRequestReader_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzz)
}
#else
@main
struct Main {
    static func main() { explainFuzzTarget() }
}
#endif
