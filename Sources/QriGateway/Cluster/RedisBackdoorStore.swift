import QriLoop
import QriRedis

/// Stored messages in a cluster: the hash `qri:backdoor` on the first Redis server. A change
/// is one script call (change the hash, publish it on `qri:control`), answered once Redis
/// holds it; every node — this one too — applies it to its registry when the control
/// message arrives, and reloads the whole set after every reconnect (a type that Redis no
/// longer has, because it lost its data, is broadcast as `TTTdelete`).
final class RedisBackdoorStore: BackdoorStore, @unchecked Sendable {
    private unowned let node: ClusterNode
    private let registry: Registry

    static let changeScript = ClusterLoop.Script("""
        if ARGV[1] == 's' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) else redis.call('HDEL', KEYS[1], ARGV[2]) end
        redis.call('PUBLISH', KEYS[2], ARGV[1] .. ARGV[2] .. ARGV[3])
        return 1
        """)

    init(node: ClusterNode, registry: Registry) {
        self.node = node
        self.registry = registry
    }

    func change(_ change: BackdoorChange, replyOn loop: EventLoop, done: @escaping @Sendable (BackdoorFailure?) -> Void) {
        let arguments: [[UInt8]]
        switch change {
        case .store(let type, let message):
            arguments = [Array("s".utf8), Array(type.utf8), message]
        case .remove(let type):
            arguments = [Array("d".utf8), Array(type.utf8), []]
        }
        let command = [Array("EVAL".utf8), Self.changeScript.source, Array("2".utf8), ClusterKeys.backdoor, ClusterKeys.control] + arguments
        node.loops[loop.index].sendToFirstServer(command) { result in
            if case .success(.integer(1)) = result {
                done(nil)
            } else {
                done(BackdoorFailure(message: "Redis is unavailable; retry later", retryable: true))
            }
        }
    }

    func stop() {}

    /// A control message from any node: `s<TTT><message>` stores, `d<TTT>` removes.
    func apply(_ payload: [UInt8]) {
        guard payload.count >= 4 else { return }
        let type = String(decoding: payload[1..<4], as: UTF8.self)
        guard BackdoorType.isValid(type) else { return }
        switch payload[0] {
        case UInt8(ascii: "s"): registry.storeHerald(type: type, message: Array(payload[4...]))
        case UInt8(ascii: "d"): registry.removeHerald(type: type)
        default: break
        }
    }

    /// Makes the registry's set what Redis holds, broadcasting each difference. On loop 0.
    func reload() {
        node.loops[0].sendToFirstServer([Array("HGETALL".utf8), ClusterKeys.backdoor]) { [weak self] result in
            guard let self else { return }
            guard case .success(.array(let items)) = result else {
                // Not reachable yet: try again shortly (the subscription is back already).
                self.node.loops[0].worker.loop.after(nanoseconds: 500_000_000) { [weak self] in self?.reload() }
                return
            }
            var stored: [String: [UInt8]] = [:]
            var i = 0
            while i + 1 < items.count {
                if let type = items[i].text, let message = items[i + 1].bytes, BackdoorType.isValid(type) { stored[type] = message }
                i += 2
            }
            let current = Dictionary(self.registry.heralds().map { ($0.type, $0.message) }, uniquingKeysWith: { a, _ in a })
            for (type, _) in current where stored[type] == nil { self.registry.removeHerald(type: type) }
            for (type, message) in stored.sorted(by: { $0.key < $1.key }) where current[type] != message {
                self.registry.storeHerald(type: type, message: message)
            }
        }
    }
}
