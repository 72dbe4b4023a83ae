#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The portable backend over poll(2): O(n) per wait, kept for systems without epoll and as a
/// cross-check of the epoll one in tests.
final class PollPoller: Poller {
    let name = "poll"
    private var fds: [pollfd] = []
    private var tokens: [UInt64] = []
    private var slotOfFD: [Int32: Int] = [:]

    func add(fd: Int32, interest: Interest, token: UInt64) throws(SystemError) {
        slotOfFD[fd] = fds.count
        fds.append(pollfd(fd: fd, events: Self.mask(interest), revents: 0))
        tokens.append(token)
    }

    func modify(fd: Int32, interest: Interest, token: UInt64) throws(SystemError) {
        guard let slot = slotOfFD[fd] else { throw SystemError("poll(modify)", errno: EBADF) }
        fds[slot].events = Self.mask(interest)
        tokens[slot] = token
    }

    func remove(fd: Int32) {
        guard let slot = slotOfFD.removeValue(forKey: fd) else { return }
        let last = fds.count - 1
        if slot != last {
            fds[slot] = fds[last]
            tokens[slot] = tokens[last]
            slotOfFD[fds[slot].fd] = slot
        }
        fds.removeLast()
        tokens.removeLast()
    }

    func wait(timeoutMilliseconds: Int32, into events: inout [PollEvent]) throws(SystemError) {
        let n = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeoutMilliseconds) }
        if n < 0 {
            let error = SystemError("poll")
            if error.errno == EINTR { return }
            throw error
        }
        if n == 0 { return }
        for slot in fds.indices where fds[slot].revents != 0 {
            let r = Int32(fds[slot].revents)
            let failed = r & Int32(POLLHUP | POLLERR | POLLNVAL) != 0
            events.append(PollEvent(
                token: tokens[slot],
                readable: failed || r & Int32(POLLIN) != 0,
                writable: failed || r & Int32(POLLOUT) != 0))
            fds[slot].revents = 0
        }
    }

    private static func mask(_ interest: Interest) -> Int16 {
        var m: Int16 = 0
        if interest.contains(.readable) { m |= Int16(POLLIN) }
        if interest.contains(.writable) { m |= Int16(POLLOUT) }
        return m
    }
}
