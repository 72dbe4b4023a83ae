/// What `qri`'s command line asks for.
public enum CommandLineRequest: Sendable, Equatable {
    /// Print `CommandLineArguments.help` and exit 0.
    case help
    /// Start the gateway with these flags: option name → text, a boolean flag alone as "true".
    case run(flags: [String: String])
}

/// `qri`'s arguments, read against `Option.all`: `--name value`, `--name=value`, a boolean
/// flag alone (or `--name=false`), and `-h` or `--help`. A later flag wins over an earlier one.
public enum CommandLineArguments {
    /// - Throws: one line naming the unknown flag, the flag without a value, or the stray argument.
    public static func parse(_ arguments: [String]) throws(ConfigurationError) -> CommandLineRequest {
        if arguments.contains("--help") || arguments.contains("-h") { return .help }
        var flags: [String: String] = [:]
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard argument.hasPrefix("--") else { throw ConfigurationError("unexpected argument '\(argument)'") }
            let flag = argument.dropFirst(2).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let option = Option.named(String(flag[0])) else { throw ConfigurationError("unknown option '--\(flag[0])'") }
            let value: String
            if flag.count == 2 {
                value = String(flag[1])
            } else if option.isBooleanFlag {
                value = "true"
            } else if let next = rest.first, !next.hasPrefix("--") {
                value = rest.removeFirst()
            } else {
                throw ConfigurationError("missing value for '\(option.usage)'")
            }
            if option.isRepeatable, let earlier = flags[option.name] {
                flags[option.name] = earlier + "," + value
            } else {
                flags[option.name] = value
            }
        }
        return .run(flags: flags)
    }

    /// `qri --help`: one line per option of `Option.all`, with its default.
    public static let help: String = {
        let width = Option.all.map(\.usage.count).max()! + 2
        func row(_ usage: String, _ text: String) -> String {
            "  " + usage + String(repeating: " ", count: width - usage.count) + text
        }
        let rows = Option.all.map { row($0.usage, "\($0.help) (default: \($0.defaultValue.text))") }
        return """
            USAGE: qri [options]

            A TLS-terminating Server-Sent-Events gateway.

            OPTIONS:
            \(rows.joined(separator: "\n"))
            \(row("-h, --help", "show this help"))

            Every option is also an environment variable QRI_<NAME> (QRI_ADMIN_LISTEN for
            --admin-listen) and a key of the YAML config file (admin-listen: 127.0.0.1:9443).
            Precedence: flag > environment > config file > default. Sizes take K, M, G suffixes
            (powers of 1024). The admin token comes from --admin-token-file or QRI_ADMIN_TOKEN.
            SIGHUP reloads the certificate; SIGTERM and SIGINT shut down gracefully.
            """
    }()
}
