import CQriSystem
#if canImport(Glibc)
import Glibc
#endif

/// Level-triggered epoll: the forgiving choice, since a handler that leaves bytes unread
/// is simply woken again.
final class EpollPoller: Poller {
    let name = "epoll"
    private let epfd: Int32
    private var buffer = [cqri_event](repeating: cqri_event(), count: 256)

    init() throws(SystemError) {
        epfd = cqri_epoll_create()
        if epfd < 0 { throw SystemError("epoll_create1") }
    }

    deinit { close(epfd) }

    func add(fd: Int32, interest: Interest, token: UInt64) throws(SystemError) {
        if cqri_epoll_ctl(epfd, 0, fd, interest.rawValue, token) != 0 { throw SystemError("epoll_ctl(ADD)") }
    }

    func modify(fd: Int32, interest: Interest, token: UInt64) throws(SystemError) {
        if cqri_epoll_ctl(epfd, 1, fd, interest.rawValue, token) != 0 { throw SystemError("epoll_ctl(MOD)") }
    }

    func remove(fd: Int32) {
        // Fails only if the fd was never added or is already closed; both leave nothing to undo.
        _ = cqri_epoll_ctl(epfd, 2, fd, 0, 0)
    }

    func wait(timeoutMilliseconds: Int32, into events: inout [PollEvent]) throws(SystemError) {
        let n = buffer.withUnsafeMutableBufferPointer {
            cqri_epoll_wait(epfd, $0.baseAddress, Int32($0.count), timeoutMilliseconds)
        }
        if n < 0 {
            let error = SystemError("epoll_wait")
            if error.errno == EINTR { return }
            throw error
        }
        for i in 0..<Int(n) {
            let e = buffer[i]
            events.append(PollEvent(token: e.data, readable: e.events & 1 != 0, writable: e.events & 2 != 0))
        }
    }
}
