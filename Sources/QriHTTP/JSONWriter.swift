/// Qri's one way to write JSON (RFC 8259): compact text appended straight to bytes, with no
/// intermediate `String`s or dictionaries. Commas are placed by the writer.
///
///     var json = JSONWriter()
///     json.object { $0.field("id", hex: 0x5f3a); $0.field("delivered", 2) }
///     json.bytes  // {"id":"5f3a","delivered":2}
///
/// Strings are given as UTF-8 and written as they are, except for what JSON requires to be
/// escaped and U+2028/U+2029 (which JavaScript older than ES2019 reads as line breaks).
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8]
    /// Whether the next value or key needs a comma before it.
    private var needsComma = false

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    // MARK: Values

    public mutating func string(_ utf8: some Collection<UInt8>) {
        separate()
        Self.appendQuoted(utf8, to: &bytes)
        needsComma = true
    }

    public mutating func string(_ text: String) {
        var text = text
        text.withUTF8 { string($0) }
    }

    public mutating func integer(_ value: Int) {
        separate()
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        appendDigits(value.magnitude, radix: 10)
        needsComma = true
    }

    /// An event id: lower-case hex in a string, as SSE `id:` lines carry it.
    public mutating func hex(_ value: UInt64) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        appendDigits(UInt(value), radix: 16)
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    public mutating func null() {
        separate()
        bytes.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])  // null
        needsComma = true
    }

    // MARK: Containers

    public mutating func object(_ members: (inout JSONWriter) -> Void) {
        open(UInt8(ascii: "{"))
        members(&self)
        close(UInt8(ascii: "}"))
    }

    public mutating func array(_ elements: (inout JSONWriter) -> Void) {
        open(UInt8(ascii: "["))
        elements(&self)
        close(UInt8(ascii: "]"))
    }

    /// A member name inside `object`; the value written next is its value.
    public mutating func key(_ name: some Collection<UInt8>) {
        separate()
        Self.appendQuoted(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    public mutating func key(_ name: StaticString) {
        name.withUTF8Buffer { key($0) }
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        key(name)
        string(value)
    }

    public mutating func field(_ name: StaticString, _ value: Int) {
        key(name)
        integer(value)
    }

    public mutating func field(_ name: StaticString, hex value: UInt64) {
        key(name)
        hex(value)
    }

    /// `{"error": message}`, the body of every admin error.
    public static func error(_ message: String) -> [UInt8] {
        var json = JSONWriter(capacity: message.utf8.count + 16)
        json.object { $0.field("error", message) }
        return json.bytes
    }

    // MARK: Internals

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func open(_ bracket: UInt8) {
        separate()
        bytes.append(bracket)
        needsComma = false
    }

    private mutating func close(_ bracket: UInt8) {
        bytes.append(bracket)
        needsComma = true
    }

    private mutating func appendDigits(_ value: UInt, radix: UInt) {
        // Least significant digit first, then turned around in place: no buffer to size.
        let start = bytes.count
        var rest = value
        repeat {
            let digit = UInt8(rest % radix)
            bytes.append(digit < 10 ? 0x30 + digit : 0x61 + digit - 10)
            rest /= radix
        } while rest > 0
        bytes[start...].reverse()
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func appendQuoted(_ utf8: some Collection<UInt8>, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + utf8.count + 2)
        out.append(UInt8(ascii: "\""))
        var previous: (UInt8, UInt8) = (0, 0)
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case UInt8(ascii: "\n"): out.append(contentsOf: [0x5C, 0x6E])
            case UInt8(ascii: "\r"): out.append(contentsOf: [0x5C, 0x72])
            case UInt8(ascii: "\t"): out.append(contentsOf: [0x5C, 0x74])
            case 0..<0x20:
                out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            case 0xA8...0xA9 where previous == (0xE2, 0x80):
                // U+2028 / U+2029: replace the two lead bytes already written by the escape.
                out.removeLast(2)
                out.append(contentsOf: [0x5C, 0x75, 0x32, 0x30, 0x32, byte == 0xA8 ? 0x38 : 0x39])
            default: out.append(byte)
            }
            previous = (previous.1, byte)
        }
        out.append(UInt8(ascii: "\""))
    }
}
