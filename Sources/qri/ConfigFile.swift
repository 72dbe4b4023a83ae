import QriGateway
import Yams

/// Reads a YAML (or JSON) config file: one top-level key per option, named like its flag
/// without dashes. Values are kept as the text written, so that every source of an option
/// goes through the same validation; `ConfigurationLoader` rejects keys that are not options.
enum ConfigFile {
    static func read(_ path: String) throws(ConfigurationError) -> [String: String] {
        guard let text = StartupConfiguration.readFile(path) else {
            throw ConfigurationError("cannot read config file \(path)")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError("config file \(path) is not valid YAML: \(String(describing: error).split(separator: "\n").joined(separator: " "))")
        }
        guard let root else { return [:] }
        guard let mapping = root.mapping else {
            throw ConfigurationError("config file \(path) must be a mapping of option names to values")
        }
        var values: [String: String] = [:]
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.scalar?.string else {
                throw ConfigurationError("config file \(path) has a key that is not a plain name")
            }
            if let list = valueNode.sequence, Option.named(key)?.isRepeatable == true {
                let items = list.compactMap { $0.scalar?.string }
                guard items.count == list.count else {
                    throw ConfigurationError("key '\(key)' in config file \(path) must be a list of plain values")
                }
                values[key] = items.joined(separator: ",")
                continue
            }
            guard let scalar = valueNode.scalar else {
                throw ConfigurationError("key '\(key)' in config file \(path) must have a single value")
            }
            values[key] = scalar.string
        }
        return values
    }
}
