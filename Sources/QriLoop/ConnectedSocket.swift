import CQriSystem
#if canImport(Glibc)
import Glibc
#endif

/// Socket options and facts of an accepted connection's descriptor.
public enum ConnectedSocket {
    /// TCP keep-alive, so that a peer that vanished without a FIN frees its slot: first probe
    /// after `idle` seconds of silence, then every `interval`, given up after `count`.
    public static func enableKeepAlive(_ fd: Int32, idle: Int32 = 60, interval: Int32 = 10, count: Int32 = 6) {
        _ = cqri_set_keepalive(fd, idle, interval, count)
    }

    /// The peer's "host:port", for log lines; nil once the peer is gone.
    public static func peerName(of fd: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        guard cqri_peer_name(fd, &buffer, buffer.count) == 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One descriptor held in reserve for the moment the process runs out (`EMFILE`): closing
/// it lets a listener accept the connection waiting at its head and close it at once, so the
/// client learns it was refused instead of waiting, and the listener stops reporting ready.
///
/// Owned by one loop; used on its thread.
public final class SpareDescriptor {
    private var fd: Int32

    public init() { fd = cqri_open_spare() }

    deinit { if fd >= 0 { _ = Glibc.close(fd) } }

    /// Accepts one waiting connection of `socket` with the spare's slot and closes it.
    /// Returns whether one was refused that way.
    public func refuseOne(from socket: ListeningSocket) -> Bool {
        if fd >= 0 {
            _ = Glibc.close(fd)
            fd = -1
        }
        let refused = (try? socket.accept()).flatMap { $0 }.map { c -> Bool in
            _ = Glibc.close(c.fd)
            return true
        } ?? false
        fd = cqri_open_spare()
        return refused
    }
}

/// Frees unused heap pages back to the system after many connections closed at once (a
/// flood of short connections leaves the allocator holding their memory otherwise).
public func releaseFreeHeapMemory() { cqri_malloc_trim() }

/// Resolves a host name to one literal address (IPv4 preferred). Blocking (DNS): for
/// start-up only, never on a loop thread.
public func resolveHostAddress(_ host: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 64)
    let size = buffer.count
    let ok = buffer.withUnsafeMutableBufferPointer { cqri_resolve(host, $0.baseAddress, size) == 0 }
    guard ok else { return nil }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
