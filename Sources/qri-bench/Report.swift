#if canImport(Glibc)
import Glibc
#endif

/// One measured step: printed at once as a machine-readable `RESULT key=value …` line, and
/// gathered for the human table at the end.
struct ResultLine {
    var fields: [(String, String)] = []

    subscript(key: String) -> String? { fields.first { $0.0 == key }?.1 }

    mutating func set(_ key: String, _ value: String) { fields.append((key, value.isEmpty ? "-" : value)) }
    mutating func set(_ key: String, _ value: Int) { set(key, String(value)) }
    mutating func set(_ key: String, _ value: Double, digits: Int = 1) { set(key, Report.format(value, digits: digits)) }

    var line: String { "RESULT " + fields.map { "\($0.0)=\($0.1.replacing(" ", with: "_"))" }.joined(separator: " ") }
}

enum Report {
    static func format(_ value: Double, digits: Int = 1) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        if digits == 0 { return String(Int(rounded)) }
        let whole = Int(rounded.magnitude)
        let fraction = Int(((rounded.magnitude - Double(whole)) * scale).rounded())
        var f = String(fraction)
        while f.count < digits { f = "0" + f }
        return (rounded < 0 ? "-" : "") + "\(whole).\(f)"
    }

    static func emit(_ result: ResultLine) {
        print(result.line)
        fflush(nil)
    }

    /// The human table: one row per step, the columns that step has.
    static func table(_ results: [ResultLine]) -> String {
        let columns: [(key: String, title: String)] = [
            ("step", "step"), ("streams", "streams"), ("offered_per_s", "offered/s"),
            ("events_per_s", "events/s"), ("openings_per_s", "opens/s"), ("accepted_per_s", "accepted/s"),
            ("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("p999_us", "p99.9 µs"), ("max_us", "max µs"),
            ("last_p99_us", "last-p99 µs"), ("rss_mb", "srv RSS MB"), ("bytes_per_stream", "B/stream"),
            ("server_cpu_pct", "srv cpu%"), ("client_cpu_pct", "cli cpu%"),
            ("server_us_per_event", "srv µs/ev"), ("server_us_per_open", "srv µs/open"),
            ("foreign_cpu_pct", "others cpu%"), ("saturated", "saturated"),
        ].filter { column in results.contains { $0[column.key] != nil } }
        var rows = [columns.map(\.title)]
        for r in results { rows.append(columns.map { r[$0.key] ?? "" }) }
        var widths = [Int](repeating: 0, count: columns.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        var text = ""
        for (n, row) in rows.enumerated() {
            text += row.enumerated().map { i, cell in
                String(repeating: " ", count: widths[i] - cell.count) + cell
            }.joined(separator: "  ") + "\n"
            if n == 0 { text += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        return text
    }
}
