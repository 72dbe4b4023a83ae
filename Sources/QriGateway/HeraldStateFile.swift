import Foundation
import QriHTTP
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
        guard let root = try? JSONReader.parse(Array(data)), case .object(let stored)? = root.member("backdoor") else {
            throw ConfigurationError("corrupt --state-file \(path): expected {\"backdoor\": {\"TTT\": \"message\"}}; move it away to start without stored messages")
        }
        var messages: [String: [UInt8]] = [:]
        for member in stored {
            let type = String(decoding: member.name, as: UTF8.self)
            guard BackdoorType.isValid(type), case .string(let message) = member.value else {
                throw ConfigurationError("corrupt --state-file \(path): bad entry for type '\(type)'")
            }
            messages[type] = Array(message)
        }
        return messages
    }

    /// Replaces the file with `messages`, durably, before returning.
    func save(_ messages: [(type: String, message: [UInt8])]) throws(ConfigurationError) {
        var json = JSONWriter()
        json.object { json in
            json.key("backdoor")
            json.object { json in
                for (type, message) in messages {
                    json.key(Array(type.utf8))
                    json.string(message)
                }
            }
        }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ConfigurationError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = json.bytes + [0x0A]
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
