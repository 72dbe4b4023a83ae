/// One option of `qri`, declared once in `Option.all`: its flag, environment variable and
/// config-file key, its default and help as `--help` and the README show them, and how its
/// text is checked and stored.
public struct Option: Sendable {
    /// The default as shown to people: a value one could write (`64M`, in code font in the
    /// README), or words (`none`, `cores`).
    public enum Default: Sendable, Equatable {
        case value(String)
        case words(String)

        public var text: String {
            switch self {
            case .value(let text), .words(let text): text
            }
        }
    }

    /// The flag without its dashes, which is also the config-file key (`admin-listen`).
    public let name: String
    /// What the value looks like (`HOST:PORT`); nil for a boolean flag, which needs none.
    public let placeholder: String?
    public let defaultValue: Default
    /// One line of plain text: also the *meaning* column of the README's table.
    public let help: String
    /// Parses the text and stores the value; errors name the value's origin.
    let apply: @Sendable (inout GatewayConfiguration, OptionValue) throws(ConfigurationError) -> Void

    /// The setting an option's value goes to (`\.listen`).
    typealias Field<T> = any WritableKeyPath<GatewayConfiguration, T> & Sendable

    init<T>(_ name: String, _ placeholder: String?, _ defaultValue: Default,
            _ field: Field<T>, _ parser: ValueParser<T>, _ help: String) {
        self.init(name, placeholder, defaultValue, help) { c, v throws(ConfigurationError) in c[keyPath: field] = try parser.parse(v) }
    }

    init<T>(_ name: String, _ placeholder: String?, _ defaultValue: Default,
            _ field: Field<T?>, _ parser: ValueParser<T>, _ help: String) {
        self.init(name, placeholder, defaultValue, help) { c, v throws(ConfigurationError) in c[keyPath: field] = try parser.parse(v) }
    }

    /// An option the loader reads but stores nowhere (`config`, read before the others).
    init(_ name: String, _ placeholder: String?, _ defaultValue: Default, _ help: String,
         apply: @escaping @Sendable (inout GatewayConfiguration, OptionValue) throws(ConfigurationError) -> Void = { _, _ in }) {
        self.name = name
        self.placeholder = placeholder
        self.defaultValue = defaultValue
        self.help = help
        self.apply = apply
    }

    public var isBooleanFlag: Bool { placeholder == nil }

    /// Whether the option may be given several times (a repeated flag, a YAML list): the
    /// values are joined with commas, as the environment variable writes them.
    public private(set) var isRepeatable = false

    func repeatable() -> Option {
        var option = self
        option.isRepeatable = true
        return option
    }

    /// The flag as usage lines write it: `--listen HOST:PORT`, `--admin-plaintext`.
    public var usage: String { placeholder.map { "--\(name) \($0)" } ?? "--\(name)" }

    /// `QRI_` and the name upper-cased, dashes as underscores: `QRI_ADMIN_LISTEN`.
    public var environmentName: String { ConfigurationLoader.environmentName(of: name) }

    /// The option called `name` (without dashes), if there is one.
    public static func named(_ name: String) -> Option? {
        all.first { $0.name == name }
    }
}
