import Logging
import QriLoop
import Synchronization

/// The warning lines a hostile client could multiply — rejections, failed handshakes, bad
/// ingest frames, failed accepts — at most one a second per kind, each saying how many
/// lines were folded into it since the last one. Thread-safe.
final class RateLimitedLog: Sendable {
    enum Kind: Int, CaseIterable {
        case rejected, handshakeFailed, badFrame, acceptFailed
    }

    private struct Window {
        var lastLine: UInt64 = 0
        var folded = 0
    }

    private let logger: Logger
    private let windows = Mutex([Window](repeating: Window(), count: Kind.allCases.count))
    private static let period: UInt64 = 1_000_000_000

    init(logger: Logger) { self.logger = logger }

    /// Logs `message` at warning unless a line of `kind` went out less than a second ago, in
    /// which case it is only counted. `metadata` is built only for lines that go out (it may
    /// make a system call, such as asking for the peer's address).
    func warning(_ kind: Kind, _ message: @autoclosure () -> Logger.Message,
                 metadata: () -> Logger.Metadata = { [:] }) {
        let now = Clock.monotonicNanoseconds()
        let folded: Int? = windows.withLock { windows in
            var window = windows[kind.rawValue]
            defer { windows[kind.rawValue] = window }
            if window.lastLine != 0 && now - window.lastLine < Self.period {
                window.folded += 1
                return nil
            }
            window.lastLine = now
            defer { window.folded = 0 }
            return window.folded
        }
        guard let folded else { return }
        var all = metadata()
        if folded > 0 { all["folded"] = "\(folded)" }
        logger.warning(message(), metadata: all)
    }
}
