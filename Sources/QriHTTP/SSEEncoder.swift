/// Encodes Server-Sent Events (WHATWG HTML §9.2) into bytes.
///
/// Data is split at every CR, LF and CRLF into several `data:` lines, so no message can end
/// an event early or inject a field: the browser joins the lines back with LF.
public enum SSEEncoder {
    /// Appends `id: <hex>\n[event: <name>\n]data: …\n\n` to `out`.
    public static func appendEvent(id: UInt64, name: [UInt8]? = nil, data: some Collection<UInt8>, to out: inout [UInt8]) {
        appendIDLine(id, to: &out)
        appendBody(name: name, data: data, to: &out)
    }

    /// Appends `id: <hex>\n`.
    public static func appendIDLine(_ id: UInt64, to out: inout [UInt8]) {
        appendField("id: ", to: &out)
        appendHex(id, to: &out)
        out.append(0x0A)
    }

    /// Appends the rest of an event after its id line: `[event: <name>\n]data: …\n\n`.
    public static func appendBody(name: [UInt8]? = nil, data: some Collection<UInt8>, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + data.count + 16)
        if let name {
            appendField("event: ", to: &out)
            out.append(contentsOf: name.lazy.filter { $0 != 0x0A && $0 != 0x0D })
            out.append(0x0A)
        }
        appendField("data: ", to: &out)
        let contiguous: Void? = data.withContiguousStorageIfAvailable { appendLines($0, to: &out) }
        if contiguous == nil { Array(data).withUnsafeBufferPointer { appendLines($0, to: &out) } }
        out.append(0x0A)
        out.append(0x0A)
    }

    /// Copies `data` in runs between line breaks, starting a new `data: ` line at each CR, LF
    /// or CRLF.
    private static func appendLines(_ data: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var runStart = data.startIndex
        var i = data.startIndex
        let end = data.endIndex
        while i < end {
            let byte = data[i]
            if byte == 0x0D || byte == 0x0A {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: data[runStart..<i]))
                appendField("\ndata: ", to: &out)
                // CRLF is one break.
                if byte == 0x0D && i + 1 < end && data[i + 1] == 0x0A { i += 1 }
                runStart = i + 1
            }
            i += 1
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: data[runStart..<end]))
    }

    /// Appends `retry: <milliseconds>\n\n`.
    public static func appendRetry(milliseconds: Int, to out: inout [UInt8]) {
        appendField("retry: ", to: &out)
        out.append(contentsOf: String(milliseconds).utf8)
        out.append(0x0A)
        out.append(0x0A)
    }

    /// Lower-case hex without leading zeros, as event ids are written.
    public static func appendHex(_ value: UInt64, to out: inout [UInt8]) {
        let digits: StaticString = "0123456789abcdef"
        var shift = max(0, (64 - value.leadingZeroBitCount + 3) / 4 * 4 - 4)
        while true {
            out.append(digits.utf8Start[Int((value >> UInt64(shift)) & 0xF)])
            if shift == 0 { break }
            shift -= 4
        }
    }

    /// Parses an event id as sent back in `Last-Event-ID`: hex of 1 to 16 digits; nil otherwise.
    public static func parseID(_ bytes: some Collection<UInt8>) -> UInt64? {
        guard !bytes.isEmpty, bytes.count <= 16 else { return nil }
        var value: UInt64 = 0
        for b in bytes {
            let digit: UInt8
            switch b {
            case 0x30...0x39: digit = b - 0x30
            case 0x61...0x66: digit = b - 0x61 + 10
            case 0x41...0x46: digit = b - 0x41 + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    private static func appendField(_ text: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }
}
