import CQriSystem
public import QriTransport
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP connection.
public final class PlainTransport: Transport {
    public private(set) var fd: Int32

    public init(fd: Int32) { self.fd = fd }

    deinit { close() }

    public func handshake() -> IOResult { .done(0) }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return .done(n) }
            if n == 0 { return .closed }
            let error = SystemError("read")
            if error.errno == EINTR { continue }
            if error.wouldBlock { return .wantRead }
            return .failed(error.description)
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        while true {
            let n = cqri_send(fd, bytes.baseAddress, bytes.count)
            if n >= 0 { return .done(n) }
            let error = SystemError("send")
            if error.errno == EINTR { continue }
            if error.wouldBlock { return .wantWrite }
            return .failed(error.description)
        }
    }

    public var hasBufferedInput: Bool { false }

    public func shutdownOutput() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }

    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }
}
