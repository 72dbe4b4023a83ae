import QriTestSupport
import QriLoop
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Polls `condition` every millisecond until it holds or `seconds` have passed.
private func waitUntil(_ seconds: Double = 2, _ condition: () -> Bool) -> Bool {
    let deadline = Clock.monotonicNanoseconds() + UInt64(seconds * 1e9)
    while Clock.monotonicNanoseconds() < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

private func makePipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    let rc = fds.withUnsafeMutableBufferPointer { pipe($0.baseAddress) }
    precondition(rc == 0)
    _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
    return (fds[0], fds[1])
}

private func writeByte(_ fd: Int32, _ byte: UInt8 = 0x41) {
    var b = byte
    precondition(write(fd, &b, 1) == 1)
}

/// Records readiness reports; reads what is there so a level-triggered poller goes quiet.
/// Touched on the loop thread only, read by the test through `reports`.
private final class RecordingHandler: ReadinessHandler, Sendable {
    let fd: Int32
    private let state = Locked<(reports: Int, bytes: [UInt8], threads: [pthread_t])>((0, [], []))
    private let onReport: (@Sendable (RecordingHandler) -> Void)?

    init(fd: Int32, onReport: (@Sendable (RecordingHandler) -> Void)? = nil) {
        self.fd = fd
        self.onReport = onReport
    }

    func loopDidReport(readable: Bool, writable: Bool) {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buffer, buffer.count)
        let thread = pthread_self()
        state.withLock {
            $0.reports += 1
            if n > 0 { $0.bytes += buffer[..<n] }
            $0.threads.append(thread)
        }
        onReport?(self)
    }

    var reports: Int { state.withLock { $0.reports } }
    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var threads: [pthread_t] { state.withLock { $0.threads } }
}

/// A loop running on its own thread for the length of one test.
private final class RunningLoop: Sendable {
    let loop: EventLoop
    private let thread = Locked<pthread_t?>(nil)
    private let finished = Locked<Bool>(false)
    private let runner: LoopThread

    /// `setUp` runs on the loop's thread before `run()`: where registrations and timers go.
    init(portable: Bool, setUp: @escaping @Sendable (EventLoop) throws -> Void = { _ in }) throws {
        let loop = try EventLoop(index: 0, portablePoller: portable)
        self.loop = loop
        let thread = self.thread, finished = self.finished
        runner = LoopThread(name: "test-loop") {
            thread.withLock { $0 = pthread_self() }
            try? setUp(loop)
            loop.run()
            finished.withLock { $0 = true }
        }
        _ = waitUntil { thread.withLock { $0 != nil } }
    }

    var pthread: pthread_t? { thread.withLock { $0 } }

    /// Runs `body` on the loop thread and waits for it.
    func sync<T: Sendable>(_ body: @escaping @Sendable (EventLoop) -> T) -> T? {
        let result = Locked<T?>(nil)
        let loop = self.loop
        loop.execute { let value = body(loop); result.withLock { $0 = value } }
        var value: T?
        _ = waitUntil { value = result.withLock { $0 }; return value != nil }
        return value
    }

    /// Stops the loop and waits for its thread; true when it stopped in time.
    func stop() -> Bool {
        loop.stop()
        let stopped = waitUntil { finished.value }
        if stopped { runner.join() }
        return stopped
    }
}

@Suite struct EventLoopTests {
    @Test(arguments: [false, true])
    func pollerBackends(portable: Bool) throws {
        let loop = try EventLoop(index: 3, portablePoller: portable)
        #expect(loop.index == 3)
        #expect(loop.pollerName == (portable ? "poll" : "epoll"))
    }

    @Test(arguments: [false, true])
    func executeFromAnotherThreadRunsOnTheLoop(portable: Bool) throws {
        let running = try RunningLoop(portable: portable)
        let ranOn = Locked<[pthread_t]>([])
        for _ in 0..<100 {
            running.loop.execute { ranOn.withLock { $0.append(pthread_self()) } }
        }
        #expect(waitUntil { ranOn.withLock { $0.count } == 100 })
        let loopThread = try #require(running.pthread)
        #expect(ranOn.withLock { $0 }.allSatisfy { pthread_equal($0, loopThread) != 0 })
        #expect(pthread_equal(pthread_self(), loopThread) == 0)
        #expect(running.stop())
    }

    @Test(arguments: [false, true])
    func executeFromManyThreads(portable: Bool) throws {
        let running = try RunningLoop(portable: portable)
        let count = Locked<Int>(0)
        let senders = (0..<4).map { _ in
            LoopThread(name: "sender") {
                for _ in 0..<1000 { running.loop.execute { count.withLock { $0 += 1 } } }
            }
        }
        for sender in senders { sender.join() }
        #expect(waitUntil { count.value == 4000 })
        #expect(running.stop())
    }

    @Test(arguments: [false, true])
    func readinessCallsTheHandlerOnTheLoop(portable: Bool) throws {
        let pipe = makePipe()
        defer { close(pipe.read); close(pipe.write) }
        let handler = RecordingHandler(fd: pipe.read)
        let running = try RunningLoop(portable: portable) { loop in
            try loop.register(fd: pipe.read, interest: .readable, handler: handler)
        }
        #expect(handler.reports == 0)
        writeByte(pipe.write, 0x41)
        #expect(waitUntil { handler.bytes == [0x41] })
        writeByte(pipe.write, 0x42)
        #expect(waitUntil { handler.bytes == [0x41, 0x42] })
        let loopThread = try #require(running.pthread)
        #expect(handler.threads.allSatisfy { pthread_equal($0, loopThread) != 0 })
        // Stop watching: further bytes are not reported.
        _ = running.sync { loop in loop.unregister(fd: pipe.read); return true }
        let reports = handler.reports
        writeByte(pipe.write, 0x43)
        _ = running.sync { _ in true }
        _ = running.sync { _ in true }
        #expect(handler.reports == reports)
        #expect(running.stop())
    }

    @Test(arguments: [false, true])
    func reRegisteringAnFDGoesToTheNewHandlerOnly(portable: Bool) throws {
        let pipe = makePipe()
        defer { close(pipe.read); close(pipe.write) }
        let old = RecordingHandler(fd: pipe.read)
        let new = RecordingHandler(fd: pipe.read)
        let running = try RunningLoop(portable: portable) { loop in
            try loop.register(fd: pipe.read, interest: .readable, handler: old)
        }
        writeByte(pipe.write)
        #expect(waitUntil { old.reports >= 1 })
        let oldReports = old.reports
        let registered = running.sync { loop -> Bool in
            loop.unregister(fd: pipe.read)
            return (try? loop.register(fd: pipe.read, interest: .readable, handler: new)) != nil
        }
        #expect(registered == true)
        writeByte(pipe.write)
        #expect(waitUntil { new.reports >= 1 })
        #expect(old.reports == oldReports)
        #expect(running.stop())
    }

    /// Two descriptors ready in the same pass; whichever handler runs first unregisters the
    /// other, closes it, and puts a fresh, idle pipe under the same fd number with a third
    /// handler. The event already collected for the old fd must reach neither the closed
    /// fd's handler nor the newcomer.
    @Test(arguments: [false, true])
    func staleEventsAfterFDReuseAreIgnored(portable: Bool) throws {
        for _ in 0..<20 {
            let first = makePipe(), second = makePipe()
            let spare = makePipe()
            let reused = Locked<(fd: Int32, handler: RecordingHandler)?>(nil)
            let handlers = Locked<[RecordingHandler]>([])
            let loopBox = Locked<EventLoop?>(nil)

            @Sendable func takeOver(_ me: RecordingHandler) {
                guard reused.withLock({ $0 == nil }), let loop = loopBox.withLock({ $0 }) else { return }
                let victim = handlers.withLock { $0.first { $0 !== me }! }
                let victimFD = victim.fd
                loop.unregister(fd: victimFD)
                // Same fd number, new file: the empty spare pipe.
                precondition(dup2(spare.read, victimFD) == victimFD)
                let newcomer = RecordingHandler(fd: victimFD)
                try! loop.register(fd: victimFD, interest: .readable, handler: newcomer)
                reused.withLock { $0 = (victimFD, newcomer) }
            }

            let h0 = RecordingHandler(fd: first.read, onReport: takeOver)
            let h1 = RecordingHandler(fd: second.read, onReport: takeOver)
            handlers.withLock { $0 = [h0, h1] }
            // Both readable before the loop's first wait: one pass reports both.
            writeByte(first.write)
            writeByte(second.write)
            let running = try RunningLoop(portable: portable) { loop in
                loopBox.withLock { $0 = loop }
                try loop.register(fd: first.read, interest: .readable, handler: h0)
                try loop.register(fd: second.read, interest: .readable, handler: h1)
            }
            #expect(waitUntil { reused.withLock { $0 != nil } })
            // Let a few more passes run.
            _ = running.sync { _ in true }
            _ = running.sync { _ in true }
            let (fd, newcomer) = try #require(reused.withLock { $0 })
            #expect(h0.reports + h1.reports == 1, "the handler of the replaced fd was called")
            #expect(newcomer.reports == 0, "a stale event reached the new handler of fd \(fd)")
            // The new registration works.
            writeByte(spare.write)
            #expect(waitUntil { newcomer.reports >= 1 })
            #expect(running.stop())
            for fd in [first.read, first.write, second.read, second.write, spare.read, spare.write] { close(fd) }
        }
    }

    @Test(arguments: [false, true])
    func everyTimerFires(portable: Bool) throws {
        let fired = Locked<[UInt64]>([])
        let start = Clock.monotonicNanoseconds()
        let running = try RunningLoop(portable: portable) { loop in
            loop.every(nanoseconds: 20_000_000) { fired.withLock { $0.append(Clock.monotonicNanoseconds()) } }
        }
        #expect(waitUntil { fired.withLock { $0.count } >= 5 })
        #expect(running.stop())
        let times = fired.withLock { $0 }
        // First after one period, and never faster than the period.
        #expect(times[0] - start >= 20_000_000)
        #expect(zip(times, times.dropFirst()).allSatisfy { $1 - $0 >= 19_000_000 })
    }

    @Test(arguments: [false, true])
    func timerAddedFromExecuteFires(portable: Bool) throws {
        let running = try RunningLoop(portable: portable)
        let fired = Locked<Int>(0)
        running.loop.execute { [loop = running.loop] in
            loop.every(nanoseconds: 5_000_000) { fired.withLock { $0 += 1 } }
        }
        #expect(waitUntil { fired.value >= 3 })
        #expect(running.stop())
    }

    @Test(arguments: [false, true])
    func aTimerCanAddATimer(portable: Bool) throws {
        let inner = Locked<Int>(0)
        let running = try RunningLoop(portable: portable) { loop in
            let added = Locked<Bool>(false)
            loop.every(nanoseconds: 5_000_000) { [unowned loop] in
                if !added.value {
                    added.withLock { $0 = true }
                    loop.every(nanoseconds: 5_000_000) { inner.withLock { $0 += 1 } }
                }
            }
        }
        #expect(waitUntil { inner.value >= 3 })
        #expect(running.stop())
    }

    @Test(arguments: [false, true])
    func handlerRegisteredFromExecuteIsCalled(portable: Bool) throws {
        let pipe = makePipe()
        defer { close(pipe.read); close(pipe.write) }
        let handler = RecordingHandler(fd: pipe.read)
        let running = try RunningLoop(portable: portable)
        let registered = running.sync { loop in (try? loop.register(fd: pipe.read, interest: .readable, handler: handler)) != nil }
        #expect(registered == true)
        writeByte(pipe.write, 0x7A)
        #expect(waitUntil { handler.bytes == [0x7A] })
        // Interest can be dropped and restored.
        _ = running.sync { loop in loop.setInterest(fd: pipe.read, .none); return true }
        writeByte(pipe.write, 0x7B)
        _ = running.sync { _ in true }
        _ = running.sync { _ in true }
        #expect(handler.bytes == [0x7A])
        _ = running.sync { loop in loop.setInterest(fd: pipe.read, .readable); return true }
        #expect(waitUntil { handler.bytes == [0x7A, 0x7B] })
        _ = running.sync { loop in loop.unregister(fd: pipe.read); return true }
        #expect(running.stop())
    }

    @Test(arguments: [false, true])
    func beforeSleepHookRunsEachPass(portable: Bool) throws {
        let passes = Locked<Int>(0)
        let running = try RunningLoop(portable: portable) { loop in
            loop.beforeSleep { passes.withLock { $0 += 1 } }
        }
        for _ in 0..<5 { _ = running.sync { _ in true } }
        #expect(passes.value >= 5)
        #expect(running.stop())
    }

    @Test(arguments: [false, true])
    func stopEndsRun(portable: Bool) throws {
        let running = try RunningLoop(portable: portable)
        #expect(running.stop())
    }
}
