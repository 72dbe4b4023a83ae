/// A start-up configuration error: one line that names the flag, key or file at fault.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Builds a `GatewayConfiguration` from option values given as text, with the precedence
/// flag > environment > config file > default, and validates each value.
///
/// The options are `Option.all`, named as flags without dashes (`admin-listen`); the
/// environment variable of one is `QRI_` and its name upper-cased with underscores.
public enum ConfigurationLoader {
    public static func environmentName(of option: String) -> String {
        "QRI_" + option.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// The keys a config file may hold: every option but `config` itself.
    public static let configFileKeys = Set(Option.all.map(\.name)).subtracting(["config"])

    /// - Parameters:
    ///   - flags: option name → text, from the command line (booleans as "true").
    ///   - environment: the process environment; only `QRI_*` names of options are read.
    ///   - file: option name → text, from the config file, and the file's path; a key that
    ///     is not in `configFileKeys` is an error.
    public static func load(flags: [String: String], environment: [String: String],
                            file: (path: String, values: [String: String])? = nil) throws(ConfigurationError) -> GatewayConfiguration {
        if let file, let key = file.values.keys.sorted().first(where: { !configFileKeys.contains($0) }) {
            throw ConfigurationError("unknown key '\(key)' in config file \(file.path)")
        }
        var c = GatewayConfiguration()
        for option in Option.all {
            if let text = flags[option.name] {
                try option.apply(&c, OptionValue(text: text, origin: "--\(option.name)"))
            } else if let text = environment[option.environmentName] {
                try option.apply(&c, OptionValue(text: text, origin: option.environmentName))
            } else if let file, let text = file.values[option.name] {
                try option.apply(&c, OptionValue(text: text, origin: "\(option.name) in \(file.path)"))
            }
        }
        if c.streamBufferBytes < 2 * c.maxFrameBytes {
            throw ConfigurationError("--stream-buffer-bytes (\(c.streamBufferBytes)) must be at least twice --max-frame-bytes (\(c.maxFrameBytes))")
        }
        if c.drainSeconds > 0 && c.drainSeconds >= c.shutdownTimeout {
            throw ConfigurationError("--drain-seconds (\(c.drainSeconds)) must be below --shutdown-timeout (\(c.shutdownTimeout))")
        }
        return c
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
