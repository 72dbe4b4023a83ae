// libFuzzer target: the strict JSON reader of admin bodies and batches. Checks that it never
// crashes on any bytes (nesting is bounded), and that every string it reads, written back by
// JSONWriter, reads back as the same bytes (the writer escapes whatever the reader accepts).
import FuzzSupport
import QriHTTP

func strings(in value: JSONValue, _ out: inout [ArraySlice<UInt8>]) {
    switch value {
    case .object(let members):
        for member in members {
            out.append(member.name)
            strings(in: member.value, &out)
        }
    case .array(let elements):
        for element in elements { strings(in: element, &out) }
    case .string(let bytes):
        out.append(bytes)
    case .number, .bool, .null:
        break
    }
}

func fuzz(_ data: UnsafeRawBufferPointer) {
    guard let value = try? JSONReader.parse(Array(data)) else { return }
    var found: [ArraySlice<UInt8>] = []
    strings(in: value, &found)
    for original in found {
        var writer = JSONWriter()
        writer.string(original)
        guard case .string(let again) = try? JSONReader.parse(writer.bytes) else {
            preconditionFailure("a string the reader accepted was written as invalid JSON")
        }
        precondition(Array(again) == Array(original), "a string changed on its way through the writer")
    }
}

#if FUZZING
@_cdecl("FuzzJSONReader_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzz)
}
#else
@main
struct Main {
    static func main() { explainFuzzTarget() }
}
#endif
