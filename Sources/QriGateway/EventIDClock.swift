public import QriLoop

/// Issues event ids: strictly increasing within the process, and never smaller than the
/// microseconds since the Unix epoch at issue time, so ids stay meaningful across restarts.
///
/// Not thread-safe by itself: the registry calls it under its lock, which also orders the
/// hand-off of each event to the loops.
public struct EventIDClock: Sendable {
    private var last: UInt64
    /// The first id this process issued or will issue; older ids predate the process.
    public let first: UInt64

    public init(now: UInt64 = Clock.wallMicroseconds()) {
        first = now
        last = now - 1
    }

    public mutating func next(now: UInt64 = Clock.wallMicroseconds()) -> UInt64 {
        last = max(last + 1, now)
        return last
    }

    /// The last id issued.
    public var latest: UInt64 { last }
}
