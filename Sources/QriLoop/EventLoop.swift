import CQriSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Something a loop wakes when its file descriptor is ready.
///
/// Handlers are called on their loop's thread only.
public protocol ReadinessHandler: AnyObject {
    func loopDidReport(readable: Bool, writable: Bool)
}

/// One readiness loop: a poller, the handlers of the descriptors it watches, a few repeating
/// timers, work handed in from other threads, and hooks run before each sleep.
///
/// Threading: everything but `execute(_:)` and `stop()` must be called on the loop's own
/// thread (the one running `run()`), or before `run()` starts. Objects the loop drives are
/// confined to it; other threads reach them only through `execute(_:)`.
///
/// One pass: before-sleep hooks → wait until the nearest timer → handlers → timers → tasks.
public final class EventLoop: @unchecked Sendable {
    /// This loop's position among its siblings, for routing work to it.
    public let index: Int
    public var pollerName: String { poller.name }

    private struct Registration {
        let handler: any ReadinessHandler
        var interest: Interest
        let generation: UInt32
    }

    private struct RepeatingTimer {
        var deadline: UInt64
        /// 0 for a timer that fires once.
        let period: UInt64
        let action: () -> Void
    }

    private let poller: any Poller
    private var registrations: [Registration?] = []
    private var generation: UInt32 = 0
    private var timers: [RepeatingTimer] = []
    private var beforeSleepHooks: [() -> Void] = []
    private var events: [PollEvent] = []

    private let wakeFD: Int32
    private let queue = Mutex<[@Sendable () -> Void]>([])
    private let wakePending = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)

    public init(index: Int, portablePoller: Bool = false) throws(SystemError) {
        self.index = index
        poller = try makePoller(portable: portablePoller)
        wakeFD = cqri_eventfd()
        if wakeFD < 0 { throw SystemError("eventfd") }
        try poller.add(fd: wakeFD, interest: .readable, token: UInt64.max)
        events.reserveCapacity(256)
    }

    deinit { close(wakeFD) }

    // MARK: Descriptors

    /// Starts watching `fd`; events for an earlier user of the same fd number are ignored.
    public func register(fd: Int32, interest: Interest, handler: any ReadinessHandler) throws(SystemError) {
        let slot = Int(fd)
        if slot >= registrations.count {
            registrations.append(contentsOf: repeatElement(nil, count: max(slot + 1 - registrations.count, 1024)))
        }
        generation &+= 1
        try poller.add(fd: fd, interest: interest, token: Self.token(fd: fd, generation: generation))
        registrations[slot] = Registration(handler: handler, interest: interest, generation: generation)
    }

    /// Changes what `fd` is waited on for; a no-op when nothing changes.
    public func setInterest(fd: Int32, _ interest: Interest) {
        let slot = Int(fd)
        guard slot < registrations.count, var registration = registrations[slot],
              registration.interest != interest else { return }
        registration.interest = interest
        registrations[slot] = registration
        try? poller.modify(fd: fd, interest: interest, token: Self.token(fd: fd, generation: registration.generation))
    }

    /// Stops watching `fd`. Call before closing it.
    public func unregister(fd: Int32) {
        let slot = Int(fd)
        guard slot < registrations.count, registrations[slot] != nil else { return }
        registrations[slot] = nil
        poller.remove(fd: fd)
    }

    private static func token(fd: Int32, generation: UInt32) -> UInt64 {
        UInt64(UInt32(bitPattern: fd)) | UInt64(generation) << 32
    }

    // MARK: Timers and hooks

    /// Runs `action` every `periodNanoseconds` on this loop, first after one period.
    public func every(nanoseconds periodNanoseconds: UInt64, _ action: @escaping () -> Void) {
        timers.append(RepeatingTimer(deadline: cqri_monotonic_ns() + periodNanoseconds,
                                     period: max(periodNanoseconds, 1_000_000), action: action))
    }

    /// Runs `action` once on this loop, `nanoseconds` from now (reconnect back-offs).
    public func after(nanoseconds: UInt64, _ action: @escaping () -> Void) {
        timers.append(RepeatingTimer(deadline: cqri_monotonic_ns() + nanoseconds, period: 0, action: action))
    }

    /// Runs `hook` once per pass, before the loop sleeps: where queued output is flushed, so
    /// that everything one pass produced for a connection leaves in one write.
    public func beforeSleep(_ hook: @escaping () -> Void) {
        beforeSleepHooks.append(hook)
    }

    // MARK: Cross-thread work

    /// Runs `task` on this loop's thread soon. Callable from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        queue.withLock { $0.append(task) }
        // One wake-up write per batch: later tasks ride on the pending one.
        if !wakePending.exchange(true, ordering: .acquiringAndReleasing) {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    /// Asks the loop to return from `run()` after its current pass. Callable from any thread.
    public func stop() {
        stopped.store(true, ordering: .releasing)
        execute {}
    }

    // MARK: Running

    /// Runs passes until `stop()`. Call on the thread that will own this loop.
    ///
    /// Work handed in before `stop()` still runs (a shutdown is handed in that way), then
    /// whatever was queued after is dropped, so that no task is left holding what it captured.
    public func run() {
        while !stopped.load(ordering: .acquiring) {
            runOnePass()
        }
        runQueuedTasks()
        for hook in beforeSleepHooks { hook() }
        queue.withLock { $0.removeAll() }
    }

    private func runOnePass() {
        for hook in beforeSleepHooks { hook() }
        events.removeAll(keepingCapacity: true)
        do {
            try poller.wait(timeoutMilliseconds: nextTimeout(), into: &events)
        } catch {
            // A failed wait is a bug or resource exhaustion; back off instead of spinning.
            usleep(10_000)
        }
        for event in events {
            if event.token == UInt64.max {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
                continue
            }
            let slot = Int(UInt32(truncatingIfNeeded: event.token))
            let generation = UInt32(truncatingIfNeeded: event.token >> 32)
            // An earlier handler in this pass may have closed this fd, or a new connection
            // may have taken its number: check before calling.
            guard slot < registrations.count, let registration = registrations[slot],
                  registration.generation == generation else { continue }
            registration.handler.loopDidReport(readable: event.readable, writable: event.writable)
        }
        runDueTimers()
        runTasks()
    }

    private func nextTimeout() -> Int32 {
        if wakePending.load(ordering: .acquiring) { return 0 }
        guard let nearest = timers.map(\.deadline).min() else { return -1 }
        let now = cqri_monotonic_ns()
        if nearest <= now { return 0 }
        return Int32(min((nearest - now + 999_999) / 1_000_000, 60_000))
    }

    private func runDueTimers() {
        guard !timers.isEmpty else { return }
        let now = cqri_monotonic_ns()
        var firedOnce = false
        for i in timers.indices where timers[i].deadline <= now {
            if timers[i].period == 0 {
                timers[i].deadline = .max
                firedOnce = true
            } else {
                // Skip missed periods rather than firing them back to back.
                timers[i].deadline = now + timers[i].period
            }
            timers[i].action()
        }
        if firedOnce { timers.removeAll { $0.period == 0 && $0.deadline == .max } }
    }

    /// Runs the tasks other threads have handed in so far, now. Used before an event that
    /// must follow every event already routed to this loop (a `Tick` with a fresh id).
    public func runQueuedTasks() {
        wakePending.store(true, ordering: .releasing)
        runTasks()
    }

    private func runTasks() {
        guard wakePending.load(ordering: .acquiring) else { return }
        wakePending.store(false, ordering: .releasing)
        let batch = queue.withLock { tasks -> [@Sendable () -> Void] in
            let batch = tasks
            tasks.removeAll(keepingCapacity: true)
            return batch
        }
        for task in batch { task() }
    }
}
