import CQriSystem

/// The two clocks Qri reads: monotonic for deadlines, wall for event ids.
public enum Clock {
    /// Nanoseconds on the monotonic clock.
    @inline(__always) public static func monotonicNanoseconds() -> UInt64 { cqri_monotonic_ns() }
    /// Microseconds since the Unix epoch.
    @inline(__always) public static func wallMicroseconds() -> UInt64 { cqri_wall_us() }
}
