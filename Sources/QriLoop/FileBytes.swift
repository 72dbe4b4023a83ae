#if canImport(Glibc)
import Glibc
#endif

/// The whole content of the file at `path`, read with stdio; nil when it cannot be opened
/// or read. Stops after a little more than `limit` bytes, so the caller can tell an
/// oversized file without reading all of it.
public func readFileBytes(_ path: String, limit: Int = Int.max) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n > 0 { bytes += chunk[..<n] }
        if n < chunk.count || bytes.count > limit { break }
    }
    return ferror(file) != 0 ? nil : bytes
}
