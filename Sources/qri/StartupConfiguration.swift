import QriGateway
import QriLoop
#if canImport(Glibc)
import Glibc
#endif

/// Turns flags, environment and files into a `GatewayConfiguration`, reading the files the
/// options name (admin token).
enum StartupConfiguration {
    static func load(flags: [String: String], environment: [String: String]) throws(ConfigurationError) -> GatewayConfiguration {
        var file: (path: String, values: [String: String])?
        if let path = flags["config"] ?? environment[ConfigurationLoader.environmentName(of: "config")] {
            file = (path, try ConfigFile.read(path))
        }
        var configuration = try ConfigurationLoader.load(flags: flags, environment: environment, file: file)
        if let file = configuration.adminTokenFile {
            guard let text = readFile(file) else { throw ConfigurationError("cannot read --admin-token-file \(file)") }
            let token = text.trimmingCharacters()
            guard !token.isEmpty else { throw ConfigurationError("--admin-token-file \(file) is empty") }
            configuration.adminToken = Array(token.utf8)
        } else if let token = environment["QRI_ADMIN_TOKEN"]?.trimmingCharacters(), !token.isEmpty {
            configuration.adminToken = Array(token.utf8)
        }
        return configuration
    }

    /// A warning when the token file can be read by the file's group or by others.
    static func tokenFileWarning(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & 0o077 != 0 else { return nil }
        return "--admin-token-file \(path) can be read by its group or others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it"
    }

    static func readFile(_ path: String) -> String? {
        readFileBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
