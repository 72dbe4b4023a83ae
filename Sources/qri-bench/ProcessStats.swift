import QriLoop
#if canImport(Glibc)
import Glibc
#endif

/// One reading of a process's memory and CPU time, from /proc.
struct ProcessSample {
    /// Resident set size in bytes (VmRSS).
    var rssBytes: Int
    /// CPU time of all its threads, in nanoseconds.
    var cpuNanoseconds: UInt64
    /// When it was taken (monotonic ns).
    var at: UInt64
    /// Busy CPU time of the whole machine (all cores) at that moment, from /proc/stat.
    var machineBusyNanoseconds: UInt64 = ProcessStats.machineBusyNanoseconds()
}

enum ProcessStats {
    /// Samples `pid`; nil when the process is gone or /proc is unreadable.
    static func sample(pid: Int32) -> ProcessSample? {
        guard let status = readFile("/proc/\(pid)/status") else { return nil }
        var rss = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            rss = (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0) * 1024
        }
        return ProcessSample(rssBytes: rss, cpuNanoseconds: cpuNanoseconds(pid: pid), at: Clock.monotonicNanoseconds())
    }

    /// This process's own CPU time.
    static func sampleSelf() -> ProcessSample {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        let cpu = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        let rss = sample(pid: getpid())?.rssBytes ?? 0
        return ProcessSample(rssBytes: rss, cpuNanoseconds: cpu, at: Clock.monotonicNanoseconds())
    }

    /// Sum of the threads' run time from /proc/PID/task/*/schedstat (ns precision); falls
    /// back to utime+stime from /proc/PID/stat (clock ticks).
    private static func cpuNanoseconds(pid: Int32) -> UInt64 {
        var total: UInt64 = 0
        var found = false
        if let dir = opendir("/proc/\(pid)/task") {
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard name.first?.isNumber == true,
                      let text = readFile("/proc/\(pid)/task/\(name)/schedstat"),
                      let first = text.split(separator: " ").first, let ns = UInt64(first) else { continue }
                total += ns
                found = true
            }
        }
        if found { return total }
        guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14, stime 15 (1-based over the whole line).
        guard fields.count > 13, let utime = UInt64(fields[11]), let stime = UInt64(fields[12]) else { return 0 }
        let hz = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        return (utime + stime) * 1_000_000_000 / hz
    }

    /// Busy time of all cores (user, nice, system, irq, softirq, steal) since boot.
    static func machineBusyNanoseconds() -> UInt64 {
        guard let stat = readFile("/proc/stat"), let first = stat.split(separator: "\n").first else { return 0 }
        let ticks = first.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard ticks.count >= 8 else { return 0 }
        let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
        let hz = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        return busy * 1_000_000_000 / hz
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// CPU and memory of both sides over one measured step.
struct SideUsage {
    var serverCPU: Double = 0      // fraction of one core
    var clientCPU: Double = 0
    var serverCPUNanoseconds: UInt64 = 0
    var serverRSS: Int = 0
    /// CPU used by other processes of the machine meanwhile, in cores (a shared machine
    /// makes every other figure noisier).
    var foreignCPU: Double = 0

    init(serverBefore: ProcessSample?, serverAfter: ProcessSample?, clientBefore: ProcessSample, clientAfter: ProcessSample) {
        let wall = Double(max(clientAfter.at - clientBefore.at, 1))
        clientCPU = Double(clientAfter.cpuNanoseconds - clientBefore.cpuNanoseconds) / wall
        if let b = serverBefore, let a = serverAfter {
            serverCPUNanoseconds = a.cpuNanoseconds &- b.cpuNanoseconds
            serverCPU = Double(serverCPUNanoseconds) / Double(max(a.at - b.at, 1))
            serverRSS = a.rssBytes
        }
        let machine = Double(clientAfter.machineBusyNanoseconds &- clientBefore.machineBusyNanoseconds) / wall
        foreignCPU = max(0, machine - clientCPU - serverCPU)
    }

    /// Which side used (nearly) all of a core: the bound of the measurement.
    func saturated(serverCores: Double) -> String {
        let server = serverCPU >= 0.9 * serverCores
        let client = clientCPU >= 0.9
        switch (server, client) {
        case (true, true): return "both"
        case (true, false): return "server"
        case (false, true): return "client"
        default: return "none"
        }
    }
}
