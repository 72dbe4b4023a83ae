/// A parsed JSON value. Strings are their UTF-8 bytes: a slice of the parsed text when the
/// string has no escapes (the common case, no copy), a fresh buffer otherwise.
public enum JSONValue: Sendable {
    /// Members in the order written.
    case object([JSONMember])
    case array([JSONValue])
    case string(ArraySlice<UInt8>)
    /// Qri reads no numbers; it only checks their grammar.
    case number
    case bool(Bool)
    case null

    /// The value of member `name` of an object (the first one when a name repeats, as for
    /// form fields); nil for a missing member or a value that is no object.
    public func member(_ name: StaticString) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return name.withUTF8Buffer { name in members.first { $0.name.elementsEqual(name) }?.value }
    }
}

public struct JSONMember: Sendable {
    public let name: ArraySlice<UInt8>
    public let value: JSONValue
}

/// Why a text is not JSON, with the offset of the byte where reading stopped.
public struct JSONError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public let offset: Int
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// Qri's one way to read JSON: a strict RFC 8259 parser over bytes, for request bodies and
/// the state file. Strict: one value and only white space around it, no trailing commas,
/// no comments, no leading zeros, valid UTF-8, no unpaired surrogates; nesting is bounded
/// (`maxDepth`) so that no body can exhaust the stack.
public struct JSONReader {
    public static let maxDepth = 64

    private let text: ArraySlice<UInt8>
    private var i: Int

    private init(_ text: ArraySlice<UInt8>) {
        self.text = text
        i = text.startIndex
    }

    /// Parses `text`, which must hold exactly one JSON value.
    public static func parse(_ text: ArraySlice<UInt8>) throws(JSONError) -> JSONValue {
        var reader = JSONReader(text)
        reader.skipSpace()
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.i == text.endIndex else { throw reader.failure("unexpected text after the value") }
        return value
    }

    public static func parse(_ text: [UInt8]) throws(JSONError) -> JSONValue {
        try parse(text[...])
    }

    // MARK: Grammar

    private mutating func value(depth: Int) throws(JSONError) -> JSONValue {
        guard i < text.endIndex else { throw failure("a value is missing") }
        switch text[i] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number(); return .number
        default: throw failure("unexpected character")
        }
    }

    private mutating func object(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= Self.maxDepth else { throw failure("nested deeper than \(Self.maxDepth)") }
        i += 1
        var members: [JSONMember] = []
        skipSpace()
        if consume(UInt8(ascii: "}")) { return .object(members) }
        while true {
            guard i < text.endIndex, text[i] == UInt8(ascii: "\"") else { throw failure("expected a member name") }
            let name = try string()
            skipSpace()
            guard consume(UInt8(ascii: ":")) else { throw failure("expected ':'") }
            skipSpace()
            members.append(JSONMember(name: name, value: try value(depth: depth)))
            skipSpace()
            if consume(UInt8(ascii: ",")) { skipSpace(); continue }
            if consume(UInt8(ascii: "}")) { return .object(members) }
            throw failure("expected ',' or '}'")
        }
    }

    private mutating func array(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= Self.maxDepth else { throw failure("nested deeper than \(Self.maxDepth)") }
        i += 1
        var elements: [JSONValue] = []
        skipSpace()
        if consume(UInt8(ascii: "]")) { return .array(elements) }
        while true {
            elements.append(try value(depth: depth))
            skipSpace()
            if consume(UInt8(ascii: ",")) { skipSpace(); continue }
            if consume(UInt8(ascii: "]")) { return .array(elements) }
            throw failure("expected ',' or ']'")
        }
    }

    /// Reads a string whose opening quote is at `i`.
    private mutating func string() throws(JSONError) -> ArraySlice<UInt8> {
        i += 1
        let start = i
        // Fast path: no escapes, so the string is a slice of the text.
        while i < text.endIndex {
            let byte = text[i]
            if byte == UInt8(ascii: "\"") {
                defer { i += 1 }
                return text[start..<i]
            }
            if byte == UInt8(ascii: "\\") { break }
            try plainCharacter(byte)
        }
        var decoded = Array(text[start..<i])
        while i < text.endIndex {
            let byte = text[i]
            if byte == UInt8(ascii: "\"") {
                i += 1
                return decoded[...]
            }
            if byte == UInt8(ascii: "\\") {
                try escape(into: &decoded)
            } else {
                let from = i
                try plainCharacter(byte)
                decoded.append(contentsOf: text[from..<i])
            }
        }
        throw failure("unterminated string")
    }

    /// Steps over one unescaped character starting with `byte`, checking its UTF-8.
    private mutating func plainCharacter(_ byte: UInt8) throws(JSONError) {
        if byte < 0x20 { throw failure("control character in a string") }
        if byte < 0x80 { i += 1; return }
        // RFC 3629's table of well-formed sequences: the lead byte bounds the second byte.
        let length: Int, second: ClosedRange<UInt8>
        switch byte {
        case 0xC2...0xDF: length = 2; second = 0x80...0xBF
        case 0xE0: length = 3; second = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3; second = 0x80...0xBF
        case 0xED: length = 3; second = 0x80...0x9F
        case 0xF0: length = 4; second = 0x90...0xBF
        case 0xF1...0xF3: length = 4; second = 0x80...0xBF
        case 0xF4: length = 4; second = 0x80...0x8F
        default: throw failure("invalid UTF-8")
        }
        guard text.endIndex - i >= length, second.contains(text[i + 1]) else { throw failure("invalid UTF-8") }
        for k in 2..<length where !(0x80...0xBF).contains(text[i + k]) { throw failure("invalid UTF-8") }
        i += length
    }

    private mutating func escape(into out: inout [UInt8]) throws(JSONError) {
        guard i + 1 < text.endIndex else { throw failure("unterminated string") }
        let kind = text[i + 1]
        i += 2
        switch kind {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(kind)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4()
            if (0xD800...0xDBFF).contains(scalar) {
                guard i + 1 < text.endIndex, text[i] == UInt8(ascii: "\\"), text[i + 1] == UInt8(ascii: "u") else {
                    throw failure("unpaired surrogate")
                }
                i += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw failure("unpaired surrogate") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw failure("unpaired surrogate")
            }
            out.append(contentsOf: UTF8.encode(Unicode.Scalar(scalar)!)!)
        default:
            i -= 1
            throw failure("unknown escape")
        }
    }

    private mutating func hex4() throws(JSONError) -> UInt32 {
        guard text.endIndex - i >= 4 else { throw failure("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = text[i]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - 0x30
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - 0x61 + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - 0x41 + 10
            default: throw failure("bad \\u escape")
            }
            value = value << 4 | UInt32(digit)
            i += 1
        }
        return value
    }

    private mutating func number() throws(JSONError) {
        _ = consume(UInt8(ascii: "-"))
        if consume(UInt8(ascii: "0")) {
            // No leading zeros.
        } else if digits() == 0 {
            throw failure("expected a digit")
        }
        if consume(UInt8(ascii: ".")), digits() == 0 { throw failure("expected a digit") }
        if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
            if !consume(UInt8(ascii: "+")) { _ = consume(UInt8(ascii: "-")) }
            if digits() == 0 { throw failure("expected a digit") }
        }
    }

    private mutating func digits() -> Int {
        let start = i
        while i < text.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(text[i]) { i += 1 }
        return i - start
    }

    private mutating func literal(_ word: StaticString) throws(JSONError) {
        let matches = word.withUTF8Buffer { word in
            text.endIndex - i >= word.count && text[i..<(i + word.count)].elementsEqual(word)
        }
        guard matches else { throw failure("unexpected character") }
        i += word.utf8CodeUnitCount
    }

    // MARK: Bytes

    private mutating func skipSpace() {
        while i < text.endIndex {
            switch text[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return
            }
        }
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard i < text.endIndex, text[i] == byte else { return false }
        i += 1
        return true
    }

    private func failure(_ reason: String) -> JSONError {
        JSONError(reason: reason, offset: i - text.startIndex)
    }
}
