import QriLoop
#if canImport(Glibc)
import Glibc
#endif

/// Opens non-blocking TCP connections to one loopback server, spreading their source
/// addresses over 127.0.0.2, 127.0.0.3, … so that more than 64k connections fit (a source
/// address has about 28k ephemeral ports per destination).
struct Connector {
    let host: String
    let port: UInt16
    /// How many source addresses to rotate through; 0 lets the kernel pick.
    let sourceAddresses: Int
    private var next = 0

    init(host: String, port: UInt16, sourceAddresses: Int) {
        self.host = host
        self.port = port
        self.sourceAddresses = sourceAddresses
    }

    /// Starts a connection; returns its descriptor (the connect may still be in progress:
    /// wait for writability, then check `connectError`). Throws on immediate failure.
    mutating func connect() throws(SystemError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SystemError("socket") }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
        if sourceAddresses > 0 {
            // Pick the port at connect time, per 4-tuple, not at bind time per address.
            let IP_BIND_ADDRESS_NO_PORT: Int32 = 24
            _ = setsockopt(fd, Int32(IPPROTO_IP), IP_BIND_ADDRESS_NO_PORT, &one, socklen_t(4))
            let source = "127.0.0.\(2 + next % sourceAddresses)"
            next += 1
            var local = Self.address(source, 0)
            let r = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if r != 0 {
                let error = SystemError("bind \(source)")
                close(fd)
                throw error
            }
        }
        var remote = Self.address(host, port)
        let r = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if r != 0 && errno != EINPROGRESS {
            let error = SystemError("connect \(host):\(port)")
            close(fd)
            throw error
        }
        return fd
    }

    /// The outcome of a non-blocking connect once the socket is writable: 0 or an errno.
    static func connectError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(4)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { return errno }
        return error
    }

    static func address(_ host: String, _ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, host, &a.sin_addr)
        return a
    }
}
