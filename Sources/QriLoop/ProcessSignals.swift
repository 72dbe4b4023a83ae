import CQriSystem
#if canImport(Glibc)
import Glibc
#endif

/// Process-wide settings a server makes once at start-up, before any thread starts.
public enum ProcessSetup {
    /// Raises the soft open-file limit to the hard one; returns the limit now in force.
    public static func raiseDescriptorLimit() -> Int { Int(cqri_raise_nofile_limit()) }

    /// A write to a closed socket must be an error, not a fatal signal.
    public static func ignoreBrokenPipe() { cqri_ignore_sigpipe() }

    /// Blocks `signals` in this thread and in every thread it starts later, so that they
    /// are only ever received by `waitForSignal`: no work runs in a signal handler.
    public static func blockSignals(_ signals: [Int32]) {
        _ = signals.withUnsafeBufferPointer { cqri_block_signals($0.baseAddress, Int32($0.count)) }
    }

    /// Waits for one of the blocked `signals` and returns it.
    public static func waitForSignal(_ signals: [Int32]) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        return received
    }
}
