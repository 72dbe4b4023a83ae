import QriLoop

/// A start-up configuration error: one line that names the flag, key or file at fault.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Builds a `GatewayConfiguration` from option values given as text, with the precedence
/// flag > environment > config file > default, and validates each value.
///
/// Options are named as flags without dashes (`admin-listen`); the environment variable of
/// one is `QRI_` and its name upper-cased with underscores.
public enum ConfigurationLoader {
    /// Every option, in the order `--help` and the README list them.
    public static let optionNames = [
        "config", "listen", "admin-listen", "ingest-listen", "cert", "key", "admin-token-file",
        "admin-plaintext", "cors-origins", "tick-interval", "herald-interval", "history", "history-ttl",
        "history-memory", "threads", "max-connections", "ocsp-file", "max-header-bytes", "max-body-bytes",
        "max-frame-bytes", "stream-buffer-bytes", "header-timeout", "handshake-timeout", "idle-timeout",
        "shutdown-timeout", "state-file", "log-level",
    ]

    public static func environmentName(of option: String) -> String {
        "QRI_" + option.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// One option's text and where it came from, for error messages.
    struct Value {
        let text: String
        let origin: String
    }

    /// - Parameters:
    ///   - flags: option name → text, from the command line (booleans as "true").
    ///   - environment: the process environment; only `QRI_*` names of options are read.
    ///   - file: option name → text, from the config file, and the file's path.
    public static func load(flags: [String: String], environment: [String: String],
                            file: (path: String, values: [String: String])? = nil) throws(ConfigurationError) -> GatewayConfiguration {
        func value(_ option: String) -> Value? {
            if let text = flags[option] { return Value(text: text, origin: "--\(option)") }
            let env = environmentName(of: option)
            if let text = environment[env] { return Value(text: text, origin: env) }
            if let file, let text = file.values[option] { return Value(text: text, origin: "\(option) in \(file.path)") }
            return nil
        }
        var c = GatewayConfiguration()
        if let v = value("listen") { c.listen = try address(v) }
        if let v = value("admin-listen") { c.adminListen = try address(v) }
        if let v = value("ingest-listen") { c.ingestListen = v.text == "off" ? nil : try address(v) }
        if let v = value("cert") { c.certificateFile = try path(v) }
        if let v = value("key") { c.keyFile = try path(v) }
        if let v = value("admin-token-file") { c.adminTokenFile = try path(v) }
        if let v = value("admin-plaintext") { c.adminPlaintext = try bool(v) }
        if let v = value("cors-origins") { c.corsOrigins = try cors(v) }
        if let v = value("tick-interval") { c.tickInterval = try seconds(v, minimum: 0.01) }
        if let v = value("herald-interval") { c.heraldInterval = try seconds(v, minimum: 0.01) }
        if let v = value("history") { c.history = try integer(v, in: 0...1_000_000) }
        if let v = value("history-ttl") { c.historyTTL = try seconds(v, minimum: 0) }
        if let v = value("history-memory") { c.historyMemory = try size(v) }
        if let v = value("threads") { c.threads = try integer(v, in: 1...1024) }
        if let v = value("max-connections") { c.maxConnections = try integer(v, in: 1...10_000_000) }
        if let v = value("ocsp-file") { c.ocspFile = try path(v) }
        if let v = value("max-header-bytes") { c.maxHeaderBytes = try size(v, minimum: 256) }
        if let v = value("max-body-bytes") { c.maxBodyBytes = try size(v) }
        if let v = value("max-frame-bytes") { c.maxFrameBytes = try size(v, minimum: 16) }
        if let v = value("stream-buffer-bytes") { c.streamBufferBytes = try size(v) }
        if let v = value("header-timeout") { c.headerTimeout = try seconds(v, minimum: 0.01) }
        if let v = value("handshake-timeout") { c.handshakeTimeout = try seconds(v, minimum: 0.01) }
        if let v = value("idle-timeout") { c.idleTimeout = try seconds(v, minimum: 0.01) }
        if let v = value("shutdown-timeout") { c.shutdownTimeout = try seconds(v, minimum: 0) }
        if let v = value("state-file") { c.stateFile = try path(v) }
        if let v = value("log-level") { c.logLevel = try logLevel(v) }
        if c.streamBufferBytes < 2 * c.maxFrameBytes {
            throw ConfigurationError("--stream-buffer-bytes (\(c.streamBufferBytes)) must be at least twice --max-frame-bytes (\(c.maxFrameBytes))")
        }
        return c
    }

    // MARK: Value parsers

    static func address(_ v: Value) throws(ConfigurationError) -> SocketAddress {
        guard let a = SocketAddress(parsing: v.text) else {
            throw ConfigurationError("invalid value '\(v.text)' for \(v.origin): expected HOST:PORT with a literal IP address")
        }
        return a
    }

    static func path(_ v: Value) throws(ConfigurationError) -> String {
        guard !v.text.isEmpty else { throw ConfigurationError("empty value for \(v.origin): expected a file path") }
        return v.text
    }

    static func bool(_ v: Value) throws(ConfigurationError) -> Bool {
        switch v.text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw ConfigurationError("invalid value '\(v.text)' for \(v.origin): expected true or false")
        }
    }

    static func cors(_ v: Value) throws(ConfigurationError) -> CORSPolicy {
        let text = v.text.trimmingWhitespace()
        if text == "*" { return .anyOrigin }
        let origins = text.split(separator: ",").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty }
        guard !origins.isEmpty, origins.allSatisfy({ $0.hasPrefix("http://") || $0.hasPrefix("https://") }) else {
            throw ConfigurationError("invalid value '\(v.text)' for \(v.origin): expected * or a comma-separated list of origins like https://app.example")
        }
        return .origins(origins)
    }

    static func integer(_ v: Value, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let n = Int(v.text.trimmingWhitespace()), range.contains(n) else {
            throw ConfigurationError("invalid value '\(v.text)' for \(v.origin): expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return n
    }

    static func seconds(_ v: Value, minimum: Double) throws(ConfigurationError) -> Double {
        guard let s = Double(v.text.trimmingWhitespace()), s.isFinite, s >= minimum, s <= 1e7 else {
            throw ConfigurationError("invalid value '\(v.text)' for \(v.origin): expected seconds (at least \(minimum))")
        }
        return s
    }

    static func size(_ v: Value, minimum: Int = 0) throws(ConfigurationError) -> Int {
        guard let n = parseSize(v.text), n >= minimum else {
            throw ConfigurationError("invalid value '\(v.text)' for \(v.origin): expected a size like 512, 8K, 64M or 1G\(minimum > 0 ? " (at least \(minimum))" : "")")
        }
        return n
    }

    /// Parses `512`, `8K`, `64M`, `1G` (powers of 1024); nil when malformed or over 1 TiB.
    public static func parseSize(_ text: String) -> Int? {
        var digits = Substring(text.trimmingWhitespace())
        var multiplier = 1
        switch digits.last {
        case "K", "k": multiplier = 1 << 10
        case "M", "m": multiplier = 1 << 20
        case "G", "g": multiplier = 1 << 30
        default: break
        }
        if multiplier > 1 { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.allSatisfy(\.isNumber), digits.allSatisfy(\.isASCII), let n = Int(digits), n >= 0, n <= (1 << 40) / multiplier else { return nil }
        return n * multiplier
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    static func logLevel(_ v: Value) throws(ConfigurationError) -> String {
        let level = v.text.lowercased()
        guard logLevels.contains(level) else {
            throw ConfigurationError("invalid value '\(v.text)' for \(v.origin): expected one of \(logLevels.joined(separator: ", "))")
        }
        return level
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\n" || c == "\r" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" || c == "\r" { s = s.dropLast() }
        return String(s)
    }

    func replacingOccurrences(of a: String, with b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}
