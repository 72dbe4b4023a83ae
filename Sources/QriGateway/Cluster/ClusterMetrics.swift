import Metrics

/// The cluster's metric series (SPEC.md *Cluster*): per Redis server up and reconnects,
/// commands by result, publish latency, subscriptions, and the fingerprint of the server list.
final class ClusterMetrics: Sendable {
    private let up: [Gauge]
    private let reconnects: [Counter]
    let commandsOK = Counter(label: "qri_redis_commands_total", dimensions: [("result", "ok")])
    let commandsFailed = Counter(label: "qri_redis_commands_total", dimensions: [("result", "failed")])
    let publishSeconds = Recorder(label: "qri_redis_publish_seconds", aggregate: true)
    let subscriptions = Gauge(label: "qri_cluster_subscriptions")
    let info: Gauge

    init(servers: [String], fingerprint: String) {
        up = servers.map { Gauge(label: "qri_redis_up", dimensions: [("server", $0)]) }
        reconnects = servers.map { Counter(label: "qri_redis_reconnects_total", dimensions: [("server", $0)]) }
        info = Gauge(label: "qri_cluster_info", dimensions: [("fingerprint", fingerprint)])
        info.record(1)
        for gauge in up { gauge.record(0) }
        for counter in reconnects { counter.increment(by: 0) }
        subscriptions.record(0)
        commandsOK.increment(by: 0)
        commandsFailed.increment(by: 0)
    }

    func server(_ shard: Int, up isUp: Bool) { up[shard].record(isUp ? 1 : 0) }
    func reconnected(_ shard: Int) { reconnects[shard].increment() }
}
