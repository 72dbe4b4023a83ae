import Foundation
import QriHTTP
import QriTestSupport
import Testing

private func write(_ build: (inout JSONWriter) -> Void) -> String {
    var json = JSONWriter()
    build(&json)
    return String(decoding: json.bytes, as: UTF8.self)
}

private func parse(_ text: String) throws(JSONError) -> JSONValue {
    try JSONReader.parse(Array(text.utf8))
}

private func string(_ value: JSONValue?) -> String? {
    guard case .string(let bytes)? = value else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

@Suite struct JSONWriterTests {
    @Test func objectsArraysAndCommas() {
        #expect(write { $0.object { $0.field("id", hex: 0x5f3a); $0.field("delivered", 2) } } == #"{"id":"5f3a","delivered":2}"#)
        #expect(write { $0.array { _ in } } == "[]")
        #expect(write { json in
            json.object { json in
                json.key("results")
                json.array { json in
                    json.object { $0.field("error", "bad") }
                    json.object { $0.key("message"); $0.null() }
                    json.integer(-12)
                    json.hex(0)
                }
            }
        } == #"{"results":[{"error":"bad"},{"message":null},-12,"0"]}"#)
        #expect(write { $0.integer(Int.min) } == "\(Int.min)")
        #expect(write { $0.hex(UInt64.max) } == #""ffffffffffffffff""#)
    }

    @Test func escapes() {
        #expect(write { $0.string("a\"b\\c\nd\re\tf\u{01}\u{1F}") } == #""a\"b\\c\nd\re\tf\u0001\u001f""#)
        // U+2028 and U+2029 are escaped; other non-ASCII stays UTF-8.
        #expect(write { $0.string("x\u{2028}y\u{2029}z€✓\u{2027}") } == "\"x\\u2028y\\u2029z€✓\u{2027}\"")
        #expect(JSONWriter.error("no \"such\" route") == Array(#"{"error":"no \"such\" route"}"#.utf8))
    }

    /// What the writer writes, Foundation reads back as the same strings.
    @Test func roundTripsThroughFoundation() throws {
        var random = SplitMix64(seed: 12)
        let alphabet: [Character] = ["Ĩ", "ĩ", "\u{2028}", "a", "\"", "\\", "\n", "\r", "\t", "\u{0}", "\u{7F}", "é", "€", "\u{2028}", "\u{2029}", "😀", "/"]
        for _ in 0..<500 {
            let text = String((0..<Int.random(in: 0...12, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
            let bytes = write { $0.array { $0.string(text) } }
            let decoded = try JSONSerialization.jsonObject(with: Data(bytes.utf8)) as? [String]
            #expect(decoded == [text])
            #expect(string(try { () throws(JSONError) -> JSONValue? in
                guard case .array(let values) = try JSONReader.parse(Array(bytes.utf8)) else { return nil }
                return values.first
            }()) == text)
        }
    }
}

@Suite struct JSONReaderTests {
    @Test func objectsAndMembers() throws {
        let value = try parse(#" {"peer": "p", "checksum":"c" , "message": "", "n": -1.5e3, "t": true, "f": false, "z": null, "a": [1, [], {}]} "#)
        #expect(string(value.member("peer")) == "p")
        #expect(string(value.member("message")) == "")
        #expect(value.member("missing") == nil)
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.map { String(decoding: $0.name, as: UTF8.self) } == ["peer", "checksum", "message", "n", "t", "f", "z", "a"])
        // A repeated name: the first wins, as in forms and query strings.
        #expect(string(try parse(#"{"a": "1", "a": "2"}"#).member("a")) == "1")
    }

    @Test func escapesDecode() throws {
        #expect(string(try parse(#""a\"b\\c\/d\b\f\n\r\t\u00e9\u20AC\ud83d\ude00""#)) == "a\"b\\c/d\u{8}\u{C}\n\r\té€😀")
        #expect(string(try parse(#""\u0000""#)) == "\u{0}")
    }

    @Test func unescapedStringsAreSlicesOfTheText() throws {
        let text = Array(#"["abc"]"#.utf8)
        guard case .array(let values) = try JSONReader.parse(text), case .string(let slice) = values[0] else {
            Issue.record("not an array of a string")
            return
        }
        #expect(slice.startIndex == 2 && slice.endIndex == 5)
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "'a'", "01", "-", "1.", ".5", "1e", "+1",
        "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
        "\"a\nb\"", "\"a\tb\"", "[1] [2]", "{} x", "// c\n{}", "NaN", "Infinity",
    ])
    func rejects(_ text: String) {
        #expect(throws: JSONError.self) { try parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22],
                               [0x22, 0xE2, 0x82, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], [0x22, 0xC3]] {
            #expect(throws: JSONError.self) { try JSONReader.parse(bytes) }
        }
        #expect(string(try? JSONReader.parse([0x22, 0xF0, 0x9F, 0x98, 0x80, 0x22])) == "😀")
    }

    /// Nesting is bounded, so no body can exhaust the stack.
    @Test func depthIsBounded() throws {
        let ok = String(repeating: "[", count: JSONReader.maxDepth) + String(repeating: "]", count: JSONReader.maxDepth)
        _ = try parse(ok)
        #expect(throws: JSONError.self) { try parse("[" + ok + "]") }
        #expect(throws: JSONError.self) { try parse(String(repeating: "[", count: 100_000)) }
        #expect(throws: JSONError.self) { try parse(String(repeating: "{\"a\":", count: 100_000)) }
    }

    @Test func errorsSayWhere() {
        do {
            _ = try parse(#"{"a": x}"#)
            Issue.record("parsed")
        } catch {
            #expect(error.offset == 6)
            #expect(error.description.hasPrefix("invalid JSON at byte 6"))
        }
    }

    /// What Foundation accepts as a document, the reader accepts too, and the other way round,
    /// on random short texts over JSON's alphabet.
    @Test func agreesWithFoundationOnRandomTexts() {
        var random = SplitMix64(seed: 7)
        let pieces = ["{", "}", "[", "]", ",", ":", "\"a\"", "\"\\n\"", "1", "-0.5e2", "true", "null", " ", "\"é\""]
        var agreed = 0
        for _ in 0..<3000 {
            let text = (0..<Int.random(in: 1...8, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
            let ours = (try? parse(text)) != nil
            let foundation = (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil
            #expect(ours == foundation, "\(text)")
            if ours == foundation { agreed += 1 }
        }
        #expect(agreed == 3000)
    }
}
