import QriRedis
import QriLoop

/// One option's text and where it came from (`--listen`, `QRI_LISTEN`, a key in a file), for
/// error messages.
struct OptionValue {
    let text: String
    let origin: String

    func invalid(_ expected: String) -> ConfigurationError {
        ConfigurationError("invalid value '\(text)' for \(origin): expected \(expected)")
    }
}

/// How an option's text becomes a value of `T`: the same for a flag, a variable and a key.
struct ValueParser<T>: Sendable {
    let parse: @Sendable (OptionValue) throws(ConfigurationError) -> T
}

extension ValueParser where T == SocketAddress {
    static var address: Self {
        Self { v throws(ConfigurationError) in
            guard let a = SocketAddress(parsing: v.text) else { throw v.invalid("HOST:PORT with a literal IP address") }
            return a
        }
    }
}

extension ValueParser where T == SocketAddress? {
    /// An address, or `off` for none.
    static var addressOrOff: Self {
        Self { v throws(ConfigurationError) in v.text == "off" ? nil : try ValueParser<SocketAddress>.address.parse(v) }
    }
}

extension ValueParser where T == String {
    static var path: Self {
        Self { v throws(ConfigurationError) in
            guard !v.text.isEmpty else { throw ConfigurationError("empty value for \(v.origin): expected a file path") }
            return v.text
        }
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    static var logLevel: Self {
        Self { v throws(ConfigurationError) in
            let level = v.text.lowercased()
            guard logLevels.contains(level) else { throw v.invalid("one of \(logLevels.joined(separator: ", "))") }
            return level
        }
    }
}

extension ValueParser where T == Bool {
    static var bool: Self {
        Self { v throws(ConfigurationError) in
            switch v.text.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: throw v.invalid("true or false")
            }
        }
    }
}

extension ValueParser where T == CORSPolicy {
    static var cors: Self {
        Self { v throws(ConfigurationError) in
            let text = v.text.trimmingWhitespace()
            if text == "*" { return .anyOrigin }
            let origins = text.split(separator: ",").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty }
            guard !origins.isEmpty, origins.allSatisfy({ $0.hasPrefix("http://") || $0.hasPrefix("https://") }) else {
                throw v.invalid("* or a comma-separated list of origins like https://app.example")
            }
            return .origins(origins)
        }
    }
}

extension ValueParser where T == Int {
    static func integer(in range: ClosedRange<Int>) -> Self {
        Self { v throws(ConfigurationError) in
            guard let n = Int(v.text.trimmingWhitespace()), range.contains(n) else {
                throw v.invalid("a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }
    }

    /// `512`, `8K`, `64M`, `1G` (see `ConfigurationLoader.parseSize`).
    static func size(minimum: Int = 0) -> Self {
        Self { v throws(ConfigurationError) in
            guard let n = ConfigurationLoader.parseSize(v.text), n >= minimum else {
                throw v.invalid("a size like 512, 8K, 64M or 1G\(minimum > 0 ? " (at least \(minimum))" : "")")
            }
            return n
        }
    }
}

extension ValueParser where T == Double {
    static func seconds(minimum: Double) -> Self {
        Self { v throws(ConfigurationError) in
            guard let s = Double(v.text.trimmingWhitespace()), s.isFinite, s >= minimum, s <= 1e7 else {
                throw v.invalid("seconds (at least \(minimum))")
            }
            return s
        }
    }
}

extension ValueParser where T == [RedisEndpoint] {
    /// Comma-separated `redis://` or `rediss://` URLs; the order matters (sharding).
    static var redisURLs: Self {
        Self { v throws(ConfigurationError) in
            let urls = v.text.split(separator: ",").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty }
            guard !urls.isEmpty else { throw v.invalid("one or more redis:// or rediss:// URLs") }
            return try urls.map { (url) throws(ConfigurationError) -> RedisEndpoint in
                guard let endpoint = RedisEndpoint(url: url) else {
                    // The URL may hold a password: name the option, not the value.
                    throw ConfigurationError("invalid Redis URL for \(v.origin): expected redis://[user:password@]host:port[/db] or rediss://…")
                }
                return endpoint
            }
        }
    }
}

extension ValueParser where T == String {
    static var nonEmpty: Self {
        Self { v throws(ConfigurationError) in
            let text = v.text.trimmingWhitespace()
            guard !text.isEmpty else { throw v.invalid("a non-empty name") }
            return text
        }
    }
}
