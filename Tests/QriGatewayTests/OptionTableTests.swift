import Foundation
import QriGateway
import Testing

/// One row of the README's *Options* table: `| `--flag VALUE` | default | meaning |`.
private struct ReadmeRow {
    let usage: String
    let defaultCell: String
    let meaning: String
}

/// The rows of README.md that start with "| `--", the README found from this file's path.
private func readmeOptionRows() throws -> [ReadmeRow] {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let text = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
    return try text.split(separator: "\n").filter { $0.hasPrefix("| `--") }.map { line in
        // `\|` is a bar inside a cell (HOST:PORT\|off).
        let cells = line.replacingOccurrences(of: "\\|", with: "\u{0}").split(separator: "|")
            .map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "\u{0}", with: "|") }
        try #require(cells.count == 3, "\(line)")
        return ReadmeRow(usage: cells[0].replacingOccurrences(of: "`", with: ""), defaultCell: cells[1],
                         meaning: cells[2].replacingOccurrences(of: "`", with: ""))
    }
}

@Suite struct OptionTableTests {
    @Test func readmeListsTheSameOptionsInTheSameOrder() throws {
        let rows = try readmeOptionRows()
        #expect(rows.map(\.usage) == Option.all.map(\.usage))
        for (row, option) in zip(rows, Option.all) {
            switch option.defaultValue {
            case .value(let text): #expect(row.defaultCell == "`\(text)`", "--\(option.name)")
            case .words(let text): #expect(row.defaultCell == text, "--\(option.name)")
            }
            #expect(row.meaning == option.help, "--\(option.name)")
        }
    }

    @Test func defaultsShownAsValuesAreTheDefaults() throws {
        let defaults = String(describing: try load())
        for option in Option.all {
            guard case .value(let text) = option.defaultValue else { continue }
            #expect(String(describing: try load(flags: [option.name: text])) == defaults, "--\(option.name) \(text)")
        }
    }

    @Test func everyOptionIsReadFromTheFlagTheEnvironmentAndTheFile() {
        // An empty value is invalid for every option, so the error shows where it was read.
        for option in Option.all where option.name != "config" {
            #expect(option.environmentName == "QRI_" + option.name.uppercased().replacingOccurrences(of: "-", with: "_"))
            #expect(loadError(flags: [option.name: ""])?.contains("--\(option.name)") == true, "--\(option.name)")
            #expect(loadError(env: [option.environmentName: ""])?.contains(option.environmentName) == true, "\(option.environmentName)")
            #expect(loadError(file: [option.name: ""], path: "/q.yaml")?.contains("\(option.name) in /q.yaml") == true, "\(option.name)")
            #expect(ConfigurationLoader.configFileKeys.contains(option.name))
        }
    }

    @Test func unknownConfigKeysAreErrors() {
        for key in ["config", "admin-token", "Listen", "tick_interval"] {
            let error = loadError(file: ["listen": "127.0.0.1:0", key: "1"], path: "/q.yaml")
            #expect(error == "unknown key '\(key)' in config file /q.yaml")
        }
    }

    @Test func helpMentionsEveryOption() {
        let help = CommandLineArguments.help
        for option in Option.all {
            #expect(help.contains("  \(option.usage) "), "--\(option.name)")
            #expect(help.contains("\(option.help) (default: \(option.defaultValue.text))"), "--\(option.name)")
        }
    }

    @Test func commandLine() throws {
        #expect(try CommandLineArguments.parse([]) == .run(flags: [:]))
        #expect(try CommandLineArguments.parse(["--listen", "127.0.0.1:1", "--history=8", "--admin-plaintext", "--threads", "-1"])
            == .run(flags: ["listen": "127.0.0.1:1", "history": "8", "admin-plaintext": "true", "threads": "-1"]))
        #expect(try CommandLineArguments.parse(["--admin-plaintext=false", "--cors-origins=a=b"])
            == .run(flags: ["admin-plaintext": "false", "cors-origins": "a=b"]))
        #expect(try CommandLineArguments.parse(["--history", "1", "--history", "2"]) == .run(flags: ["history": "2"]))
        #expect(try CommandLineArguments.parse(["--listen", "x", "--help"]) == .help)
        #expect(try CommandLineArguments.parse(["-h"]) == .help)
    }

    @Test func commandLineErrorsNameTheArgument() {
        let cases: [([String], String)] = [
            (["--no-such-flag"], "unknown option '--no-such-flag'"),
            (["--admin-token", "x"], "unknown option '--admin-token'"),
            (["--listen"], "missing value for '--listen HOST:PORT'"),
            (["--listen", "--history", "1"], "missing value for '--listen HOST:PORT'"),
            (["listen"], "unexpected argument 'listen'"),
            (["-x"], "unexpected argument '-x'"),
        ]
        for (arguments, message) in cases {
            let error = #expect(throws: ConfigurationError.self, "\(arguments)") { try CommandLineArguments.parse(arguments) }
            #expect(error?.description == message)
        }
    }
}
