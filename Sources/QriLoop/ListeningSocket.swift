import CQriSystem
#if canImport(Glibc)
import Glibc
#endif

/// A bound, listening, non-blocking TCP socket. Owns its descriptor and closes it on `close()`.
///
/// With `reusePort`, several sockets may listen on one address, one per loop, and the kernel
/// spreads new connections over them.
public final class ListeningSocket {
    public let fd: Int32
    /// The bound address, with the real port when port 0 was asked for.
    public let address: SocketAddress

    public init(address: SocketAddress, reusePort: Bool, backlog: Int32 = 4096) throws(SystemError) {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SystemError("socket") }
        _ = cqri_set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        if reusePort { _ = cqri_set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1) }
        let bound = address.withSockaddr { bind(fd, $0, $1) } ?? -1
        if bound != 0 {
            let error = SystemError("bind \(address)")
            Glibc.close(fd)
            throw error
        }
        if listen(fd, backlog) != 0 {
            let error = SystemError("listen \(address)")
            Glibc.close(fd)
            throw error
        }
        self.fd = fd
        self.address = SocketAddress(host: address.host, port: Self.boundPort(fd) ?? address.port)
    }

    /// Accepts one connection as a non-blocking descriptor, with its peer's address; nil
    /// when none is waiting.
    public func accept() throws(SystemError) -> AcceptedSocket? {
        var address = (UInt64(0), UInt64(0))
        var family: Int32 = 0
        let c = withUnsafeMutableBytes(of: &address) { raw in
            cqri_accept(fd, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), &family)
        }
        if c >= 0 {
            _ = cqri_set_int_option(c, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            let peer = withUnsafeBytes(of: &address) { raw in
                PeerAddress(bytes: raw.prefix(family == 4 ? 4 : family == 6 ? 16 : 0))
            }
            return AcceptedSocket(fd: c, peer: peer)
        }
        let error = SystemError("accept")
        if error.wouldBlock || error.errno == EINTR || error.errno == ECONNABORTED { return nil }
        throw error
    }

    public func close() { Glibc.close(fd) }

    private static func boundPort(_ fd: Int32) -> UInt16? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard ok == 0 else { return nil }
        let family = Int32(storage.ss_family)
        return withUnsafePointer(to: &storage) { pointer -> UInt16 in
            if family == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }
}
