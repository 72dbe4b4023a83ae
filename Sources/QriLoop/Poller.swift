import CQriSystem

/// What a file descriptor is waited on for.
public struct Interest: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readable = Interest(rawValue: 1)
    public static let writable = Interest(rawValue: 2)
    public static let none: Interest = []
}

/// One readiness report. Errors and hang-ups are folded into "readable and writable", so a
/// handler meets them in its own read or write, as Redis's ae does.
public struct PollEvent: Sendable {
    public var token: UInt64
    public var readable: Bool
    public var writable: Bool
}

/// The seam between the loop and the kernel's readiness API: epoll on Linux, poll(2)
/// elsewhere or on request. A poller is owned by one loop and used from its thread only.
public protocol Poller: AnyObject {
    var name: String { get }
    func add(fd: Int32, interest: Interest, token: UInt64) throws(SystemError)
    func modify(fd: Int32, interest: Interest, token: UInt64) throws(SystemError)
    func remove(fd: Int32)
    /// Waits up to `timeoutMilliseconds` (-1: forever) and appends what is ready to `events`.
    func wait(timeoutMilliseconds: Int32, into events: inout [PollEvent]) throws(SystemError)
}

/// Makes the best poller this system has, or the portable one when `portable` is set.
public func makePoller(portable: Bool = false) throws(SystemError) -> any Poller {
    if !portable && cqri_has_epoll() != 0 { return try EpollPoller() }
    return PollPoller()
}
