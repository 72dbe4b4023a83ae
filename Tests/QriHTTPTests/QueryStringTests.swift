import QriHTTP
import Testing

private func pairs(_ text: String, plusIsSpace: Bool = false) -> [(String, String)] {
    QueryString(Array(text.utf8), plusIsSpace: plusIsSpace).pairs.map {
        (String(decoding: $0.name, as: UTF8.self), String(decoding: $0.value, as: UTF8.self))
    }
}

private func value(_ text: String, _ name: StaticString, plusIsSpace: Bool = false) -> String? {
    QueryString(Array(text.utf8), plusIsSpace: plusIsSpace).value(name).map { String(decoding: $0, as: UTF8.self) }
}

private func decode(_ text: String, plusIsSpace: Bool = false) -> [UInt8] {
    Array(QueryString.decode(Array(text.utf8)[...], plusIsSpace))
}

@Suite struct QueryStringTests {
    @Test func splitsPairs() {
        let p = pairs("p=peer&s=sum")
        #expect(p.map(\.0) == ["p", "s"])
        #expect(p.map(\.1) == ["peer", "sum"])
        #expect(value("p=peer&s=sum", "s") == "sum")
        #expect(value("p=peer&s=sum", "x") == nil)
    }

    @Test func percentDecoding() {
        #expect(value("p=a%20b&s=%2F%3d%26", "p") == "a b")
        #expect(value("p=a%20b&s=%2F%3d%26", "s") == "/=&")
        #expect(value("p=%e2%82%ac%E2%82%AC", "p") == "€€")
        #expect(decode("%00%ff") == [0x00, 0xFF])
        // Names are decoded too.
        #expect(value("%70=1", "p") == "1")
        // An encoded `&` or `=` does not split.
        #expect(pairs("a=%26b%3Dc").map(\.1) == ["&b=c"])
    }

    @Test func plusIsKeptForStreams() {
        #expect(value("p=a+b&s=x+y", "p") == "a+b")
        #expect(value("p=a+b&s=x+y", "s") == "x+y")
        #expect(value("p=a%2Bb", "p") == "a+b")
    }

    @Test func plusIsSpaceForForms() {
        #expect(value("message=hello+world", "message", plusIsSpace: true) == "hello world")
        #expect(value("message=a%2Bb", "message", plusIsSpace: true) == "a+b")
        #expect(value("a+b=1", "a b", plusIsSpace: true) == "1")
    }

    @Test func malformedPercentStaysAsItIs() {
        #expect(decode("%") == Array("%".utf8))
        #expect(decode("%2") == Array("%2".utf8))
        #expect(decode("a%") == Array("a%".utf8))
        #expect(decode("%zz") == Array("%zz".utf8))
        #expect(decode("%2g") == Array("%2g".utf8))
        #expect(decode("%g2") == Array("%g2".utf8))
        #expect(decode("%%41") == Array("%A".utf8))
        #expect(decode("100%") == Array("100%".utf8))
        #expect(decode("%+", plusIsSpace: true) == Array("% ".utf8))
        #expect(value("p=50%&s=1", "p") == "50%")
        #expect(value("p=50%&s=1", "s") == "1")
    }

    @Test func missingEquals() {
        let p = pairs("flag&x=1")
        #expect(p.map(\.0) == ["flag", "x"])
        #expect(p.map(\.1) == ["", "1"])
        #expect(value("flag&x=1", "flag") == "")
    }

    @Test func emptyPairsAreSkipped() {
        #expect(pairs("").isEmpty)
        #expect(pairs("&").isEmpty)
        #expect(pairs("&&a=1&&b=2&").map(\.0) == ["a", "b"])
    }

    @Test func emptyNamesAndValues() {
        #expect(pairs("=").map(\.0) == [""])
        #expect(pairs("=").map(\.1) == [""])
        #expect(value("p=&s=1", "p") == "")
        #expect(value("=v", "") == "v")
    }

    @Test func onlyTheFirstEqualsSplits() {
        #expect(value("a=b=c", "a") == "b=c")
    }

    @Test func firstValueWins() {
        #expect(value("p=1&p=2", "p") == "1")
        #expect(pairs("p=1&p=2").count == 2)
    }

    @Test func worksOnSlices() {
        let bytes = Array("/stream?p=x&s=y".utf8)
        let q = QueryString(bytes[8...], plusIsSpace: false)
        #expect(q.value("p").map(Array.init) == Array("x".utf8))
        #expect(q.value("s").map(Array.init) == Array("y".utf8))
    }
}
