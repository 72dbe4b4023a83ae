import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The file that keeps stored backdoor messages across restarts: a JSON object
/// `{"backdoor": {"TTT": "message", …}}`, replaced atomically (temporary file, fsync,
/// rename, fsync of the folder) on every change.
struct HeraldStateFile: Sendable {
    let path: String

    /// Reads the stored messages; a missing file means none (and its folder is created).
    func load() throws(ConfigurationError) -> [String: [UInt8]] {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw ConfigurationError("cannot create the folder of --state-file \(path): \(error.localizedDescription)")
            }
        }
        // A write interrupted before its rename leaves the temporary file: the real one is
        // still whole, so the leftover is only clutter.
        unlink(path + ".tmp")
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("cannot read --state-file \(path)")
        }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let stored = root["backdoor"] as? [String: Any] else {
            throw ConfigurationError("corrupt --state-file \(path): expected {\"backdoor\": {\"TTT\": \"message\"}}; move it away to start without stored messages")
        }
        var messages: [String: [UInt8]] = [:]
        for (type, value) in stored {
            guard BackdoorType.isValid(type), let message = value as? String else {
                throw ConfigurationError("corrupt --state-file \(path): bad entry for type '\(type)'")
            }
            messages[type] = Array(message.utf8)
        }
        return messages
    }

    /// Replaces the file with `messages`, durably, before returning.
    func save(_ messages: [(type: String, message: [UInt8])]) throws(ConfigurationError) {
        var json = "{\"backdoor\": {"
        json += messages.map { "\(JSON.string($0.type)): \(JSON.string(String(decoding: $0.message, as: UTF8.self)))" }
            .joined(separator: ", ")
        json += "}}\n"
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ConfigurationError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(json.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                close(fd)
                throw ConfigurationError("cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            close(fd)
            throw ConfigurationError("cannot sync \(temporary): \(String(cString: strerror(errno)))")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            throw ConfigurationError("cannot replace \(path): \(String(cString: strerror(errno)))")
        }
        // The rename is durable only once the folder is synced too.
        let directory = (path as NSString).deletingLastPathComponent
        let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }
}

/// Backdoor message types: exactly three ASCII digits, the code qri-js reads.
enum BackdoorType {
    static func isValid(_ type: String) -> Bool {
        type.utf8.count == 3 && type.utf8.allSatisfy { (0x30...0x39).contains($0) }
    }
}

/// The little JSON Qri writes itself: strings escaped per RFC 8259.
enum JSON {
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func error(_ message: String) -> [UInt8] {
        Array("{\"error\": \(string(message))}".utf8)
    }
}
